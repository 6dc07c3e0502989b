/* The Prometheus text: escaping, exact and float values, series left out
 * when not known, the in-sync rules and the segment counts (metrics.sh runs
 * the real commands and promtool). */
#include "helpers.h"
#include "metrics.h"
#include "probe.h"

#define SMALL "version: 1\nhost: {ram_tier: small}\n"

/* Each test's profile and metrics, started from it; the last rendered
 * text. The suite's fini frees them. */
static struct profile *p;
static struct metrics m;
static char *text;

static void start(const char *yaml)
{
    p = parse_profile_or_die(yaml);
    metrics_init(&m, p, NULL);
}

static void finish(void)
{
    free(text);
    profile_free(p);
}

TestSuite(metrics, .fini = finish);

/* m rendered into text, in place of the last rendering. */
static char *render(void)
{
    size_t len = 0;
    FILE *f;

    free(text);
    text = NULL;
    f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    cr_assert_eq(metrics_render(&m, f), 0);
    cr_assert_eq(fclose(f), 0);
    return text;
}

/* The rendering holds want as a whole line (never its first: that is a # HELP). */
static void expect_line(const char *want)
{
    char framed[512];

    (void)snprintf(framed, sizeof(framed), "\n%s\n", want);
    cr_expect(strstr(text, framed) != NULL, "no line '%s' in:\n%s", want, text);
}

Test(metrics, info_label_values_are_escaped_in_the_text)
{
    start(SMALL);
    m.workload = "new\nline \"quoted\" back\\slash\ttab";
    render();
    /* A tab is no problem for the format: only the other three are escaped. */
    cr_expect(strstr(text, ",workload=\"new\\nline \\\"quoted\\\" back\\\\slash\ttab\",") != NULL, "%s", text);
    cr_expect(strstr(text, ",tier=\"small\",") != NULL, "a fixed tier is known without a plan: %s", text);
}

Test(metrics, nothing_known_gives_only_info)
{
    size_t lines = 0;

    start("version: 1\n");
    for (const char *c = render(); *c; c++)
        lines += *c == '\n';
    cr_expect_eq(lines, 3, "# HELP, # TYPE and the one sample: %s", text);
    cr_expect(strstr(text, ",tier=\"unknown\",") != NULL, "auto needs the plan to say: %s", text);
    cr_expect(strstr(text, "# TYPE shmprov_info gauge\n") != NULL);
}

Test(metrics, large_values_exact_and_shmall_bytes_as_a_float)
{
    start(SMALL);
    m.page_size = 4096;
    metrics_set_running(&m, SIZING_KEY_SHMMAX, true, UINT64_C(18446744073692774399));
    metrics_set_running(&m, SIZING_KEY_SHMALL, true, UINT64_C(18446744073692774399));
    metrics_set_running(&m, SIZING_KEY_SHMMNI, true, 4096);
    m.segments = (struct metrics_u64){ true, 0 };
    m.pages = (struct metrics_u64){ true, 0 };
    render();
    expect_line("shmprov_limit_bytes{key=\"kernel.shmmax\",value=\"running\"} 18446744073692774399");
    /* 18446744073692774399 x 4096 does not fit in 64 bits. */
    expect_line("shmprov_shmall_bytes 7.5557863725845604e+22");
    expect_line("shmprov_headroom_bytes{limited_by=\"kernel.shmmax\"} 18446744073692774399");
    cr_expect_null(strstr(text, "value=\"profile\""), "not managed: no profile or derived series");
    cr_expect_null(strstr(text, "shmprov_in_sync"), "not managed: no in_sync");
}

Test(metrics, last_apply_one_series_and_duration_in_seconds)
{
    struct state s = { .last_run = { .known = true, .result = "refused", .end = 1796464800, .duration_ms = 10001,
                                     .probe_passed = -1 },
                       .last_success_end = 1796460000 };

    start(SMALL);
    metrics_set_state(&m, &s);
    render();
    expect_line("shmprov_last_apply{result=\"refused\"} 1");
    expect_line("shmprov_last_apply_timestamp_seconds 1796464800");
    expect_line("shmprov_last_apply_duration_seconds 10.001");
    expect_line("shmprov_last_successful_apply_timestamp_seconds 1796460000");
    cr_expect_null(strstr(text, "shmprov_last_probe_passed"), "no test allocation ran: absent");

    s.last_run.duration_ms = 7;
    s.last_run.probe_passed = 0;
    metrics_set_state(&m, &s);
    render();
    expect_line("shmprov_last_apply_duration_seconds 0.007");
    expect_line("shmprov_last_probe_passed 0");
}

Test(metrics, every_family_has_help_and_type_once_before_its_samples)
{
    struct state s = { .last_run = { .known = true, .result = "changed", .end = 1, .duration_ms = 1,
                                     .probe_passed = 1 },
                       .last_success_end = 1 };
    char *save = NULL, last[128] = "";

    start(SMALL);
    m.keys[SIZING_KEY_SHMMAX].managed = true;
    metrics_set_running(&m, SIZING_KEY_SHMMAX, true, 1);
    metrics_set_dropin(&m, true);
    m.segments = m.pages = m.bytes = m.largest = m.orphans = m.leftovers = (struct metrics_u64){ true, 0 };
    m.waiting = m.dropped = m.quarantined = m.rejected = (struct metrics_u64){ true, 0 };
    metrics_set_state(&m, &s);
    for (char *l = strtok_r(render(), "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[128], type[128];

        if (sscanf(l, "# HELP %127s", name) == 1) {
            cr_expect_str_neq(name, last, "%s: one # HELP per family", name);
            l = strtok_r(NULL, "\n", &save);
            cr_assert_not_null(l);
            cr_expect_eq(sscanf(l, "# TYPE %127s gauge", type), 1, "%s", l);
            cr_expect_str_eq(type, name);
            (void)snprintf(last, sizeof(last), "%s", name);
            continue;
        }
        /* A sample: of the family just declared. */
        cr_expect_eq(strncmp(l, last, strlen(last)), 0, "%s is not of %s", l, last);
        cr_expect(l[strlen(last)] == '{' || l[strlen(last)] == ' ', "%s", l);
    }
}

Test(metrics, in_sync_follows_the_policy_and_unknown_is_left_out)
{
    start(SMALL "policy: raise-only\n");
    m.keys[SIZING_KEY_SHMMAX].managed = true;
    m.keys[SIZING_KEY_SHMMAX].derived = 100;
    metrics_set_running(&m, SIZING_KEY_SHMMAX, true, 200);
    cr_expect_eq(m.keys[SIZING_KEY_SHMMAX].in_sync[METRICS_CHECK_RUNTIME], 1, "raise-only: more is in sync");
    metrics_set_running(&m, SIZING_KEY_SHMMAX, true, 99);
    cr_expect_eq(m.keys[SIZING_KEY_SHMMAX].in_sync[METRICS_CHECK_RUNTIME], 0);
    metrics_set_running(&m, SIZING_KEY_SHMMAX, false, 0);
    cr_expect_eq(m.keys[SIZING_KEY_SHMMAX].in_sync[METRICS_CHECK_RUNTIME], 0, "unreadable: drift, as verify says");
    render();
    expect_line("shmprov_in_sync{key=\"kernel.shmmax\",check=\"runtime\"} 0");
    cr_expect_null(strstr(text, "check=\"dropin\""), "not known: left out, never a guessed 0");
    cr_expect_null(strstr(text, "value=\"running\""), "unreadable: no running series");
    m.policy_id = PROFILE_POLICY_ENFORCE;
    metrics_set_running(&m, SIZING_KEY_SHMMAX, true, 200);
    cr_expect_eq(m.keys[SIZING_KEY_SHMMAX].in_sync[METRICS_CHECK_RUNTIME], 0, "enforce: exactly");
}

/* The boot check of one key after metrics_set_boot(). */
static int boot_in_sync(const struct plan *plan, const struct conflicts *c, enum sizing_key_id key)
{
    metrics_set_boot(&m, plan, c);
    return m.keys[key].in_sync[METRICS_CHECK_BOOT];
}

Test(metrics, boot_is_shmprovs_dropin_winning_under_systemd_sysctl)
{
    /* Both too large for a stack frame of their own. */
    struct plan *plan = calloc(1, sizeof(*plan));
    struct conflicts *c = calloc(1, sizeof(*c));

    cr_assert(plan && c);
    start(SMALL);
    plan->profile = p;
    plan->sizing.keys[SIZING_KEY_SHMMAX] = (struct sizing_key){ .managed = true, .persist = true };
    plan->sizing.keys[SIZING_KEY_SHMALL] = (struct sizing_key){ .managed = true, .persist = false }; /* kept (raise-only) */
    m.keys[SIZING_KEY_SHMMAX].managed = m.keys[SIZING_KEY_SHMALL].managed = true;
    cr_expect_eq(boot_in_sync(plan, NULL, SIZING_KEY_SHMMAX), -1);

    c->winners[SIZING_KEY_SHMMAX][SYSCTLD_SYSTEMD].known = true;
    strcpy(c->winners[SIZING_KEY_SHMMAX][SYSCTLD_SYSTEMD].path, p->dropin);
    cr_expect_eq(boot_in_sync(plan, c, SIZING_KEY_SHMMAX), 1);
    cr_expect_eq(boot_in_sync(plan, c, SIZING_KEY_SHMALL), 1, "not in the drop-in: nothing to lose");
    cr_expect_eq(boot_in_sync(plan, c, SIZING_KEY_SHMMNI), -1, "not managed");
    c->uncertain[SYSCTLD_SYSTEMD] = true;
    cr_expect_eq(boot_in_sync(plan, c, SIZING_KEY_SHMMAX), 0, "a file not analysed may win");
    c->uncertain[SYSCTLD_SYSTEMD] = false;
    strcpy(c->winners[SIZING_KEY_SHMMAX][SYSCTLD_SYSTEMD].path, "/etc/sysctl.d/99-other.conf");
    cr_expect_eq(boot_in_sync(plan, c, SIZING_KEY_SHMMAX), 0);
    free(c);
    free(plan);
}

Test(metrics, segments_counted_as_status_counts_them)
{
    struct shmseg_table *t = calloc(1, sizeof(*t) + 4 * sizeof(struct shmseg));
    uint32_t me = (uint32_t)geteuid();
    int64_t gone = INT32_MAX; /* above any pid_max: no such process */

    cr_assert_not_null(t);
    t->count = 4;
    /* A probe leftover, an orphan, a persistent one, one in use by us. */
    t->items[0] = (struct shmseg){ .key = SHMPROV_PROBE_KEY, .id = 1, .mode = 0600, .size = 4096, .cpid = gone,
                                   .uid = me, .cuid = me };
    t->items[1] = (struct shmseg){ .key = 0x1234, .id = 2, .mode = 0600, .size = 4096, .cpid = gone };
    t->items[2] = (struct shmseg){ .key = 0x0052e2c1, .id = 3, .mode = 0600, .size = 4096, .cpid = gone };
    t->items[3] = (struct shmseg){ .key = 0x5678, .id = 4, .mode = 0600, .size = 4096, .cpid = getpid(),
                                   .nattch = 1 };
    start("version: 1\nsegments:\n  persistent_keys: [0x0052e2c1]\n");
    metrics_count_segments(&m, p, t);
    cr_expect(m.orphans.known && m.leftovers.known);
    cr_expect_eq(m.orphans.value, 1, "the leftover and the persistent one are not orphans of unknown origin");
    cr_expect_eq(m.leftovers.value, 1);
    metrics_count_segments(&m, p, NULL);
    cr_expect(!m.orphans.known && !m.leftovers.known, "no table: not known, never 0");
    free(t);
}

Test(metrics, spool_read_without_its_lock, .init = scratch_make, .fini = scratch_remove)
{
    char yaml[256], spool[64];

    (void)snprintf(spool, sizeof(spool), "%s/spool", scratch());
    (void)snprintf(yaml, sizeof(yaml), "version: 1\nreport:\n  url: https://c.example.net/e\n  spool_dir: %s\n", spool);
    start(yaml);
    metrics_read_spool(&m, p);
    cr_expect(m.waiting.known && m.waiting.value == 0 && m.dropped.known && m.dropped.value == 0,
              "no spool directory yet: nothing was ever spooled");

    put_file(spool, "00000000000000000001-0b8f7d7e-6f0e-4c55-9d8e-3f1e2a4b5c6d.json", "{}");
    put_file(spool, "00000000000000000002-1b8f7d7e-6f0e-4c55-9d8e-3f1e2a4b5c6d.json", "{}");
    put_file(spool, "notes.json", "{}"); /* not an event name: not counted */
    put_file(spool, "dropped.count", "3\n");
    put_file(spool, "quarantined.count", "three\n");
    metrics_read_spool(&m, p);
    cr_expect_eq(m.waiting.value, 2);
    cr_expect(m.dropped.known && m.dropped.value == 3);
    cr_expect(!m.quarantined.known, "a damaged counter: left out, not 0");
    cr_expect(m.rejected.known && m.rejected.value == 0, "no file: nothing counted");

    profile_free(p);
    start(SMALL);
    metrics_read_spool(&m, p);
    cr_expect(!m.waiting.known && !m.dropped.known, "no report.url: no spool figures at all");
}

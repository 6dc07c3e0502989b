#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "log.h"
#include "spool.h"
#include "status.h"
#include "version.h"

/* A temporary file beside the textfile this old belongs to a run that
 * died, not to a concurrent writer (apply and status may write at once). */
#define STALE_TEMP_SECONDS 600

/* ---- filling ------------------------------------------------------------- */

void metrics_init(struct metrics *m, const struct profile *p, const struct plan *plan)
{
    long page = sysconf(_SC_PAGESIZE);

    memset(m, 0, sizeof(*m));
    (void)snprintf(m->profile_sha256, sizeof(m->profile_sha256), "%s", p->sha256_hex);
    /* The tier used: measured under auto, which needs the plan. */
    m->tier = plan ? profile_tier_name(plan->sizing.tier)
              : p->ram_tier != PROFILE_TIER_AUTO ? profile_tier_name(p->ram_tier)
                                         : "unknown";
    m->workload = profile_workload_name(p->workload);
    m->policy = profile_policy_name(p->policy);
    m->policy_id = p->policy;
    m->page_size = plan ? plan->host.page_size : page > 0 ? (uint64_t)page : 0;
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        for (int c = 0; c < METRICS_CHECKS; c++)
            m->keys[id].in_sync[c] = -1;
    if (!plan)
        return;
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];

        m->keys[id].managed = k->managed;
        m->keys[id].profile = k->target;
        m->keys[id].derived = k->derived;
        metrics_set_running(m, (enum sizing_key_id)id, plan->host.current.known[id], plan->host.current.value[id]);
    }
    metrics_set_dropin(m, plan->dropin_read_errno == 0 && !plan->dropin_changed);
    if (plan->host.usage_known) {
        m->segments = (struct metrics_u64){ true, plan->host.usage.segments };
        m->pages = (struct metrics_u64){ true, plan->host.usage.pages };
        m->bytes = (struct metrics_u64){ true, plan->host.usage.bytes };
        m->largest = (struct metrics_u64){ true, plan->host.usage.largest_segment };
    }
}

/* An unreadable value is out of sync, as verify says. */
void metrics_set_running(struct metrics *m, enum sizing_key_id key, bool known, uint64_t value)
{
    struct metrics_key *k = &m->keys[key];

    k->running = (struct metrics_u64){ known, known ? value : 0 };
    if (k->managed)
        k->in_sync[METRICS_CHECK_RUNTIME] =
            known && plan_value_in_sync(m->policy_id, k->derived, value);
}

void metrics_set_dropin(struct metrics *m, bool in_sync)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        if (m->keys[id].managed)
            m->keys[id].in_sync[METRICS_CHECK_DROPIN] = in_sync;
}

void metrics_set_boot(struct metrics *m, const struct plan *plan, const struct conflicts *c)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        const struct sysctld_assignment *w;

        if (!k->managed)
            continue;
        if (!c) {
            m->keys[id].in_sync[METRICS_CHECK_BOOT] = -1;
            continue;
        }
        w = &c->winners[id][SYSCTLD_SYSTEMD];
        /* A file that could not be analysed may win: unknown is not in
         * sync, as apply and verify treat it. */
        m->keys[id].in_sync[METRICS_CHECK_BOOT] =
            !k->persist ||
            (!c->uncertain[SYSCTLD_SYSTEMD] && w->known && strcmp(w->path, plan->profile->dropin) == 0);
    }
}

void metrics_count_segments(struct metrics *m, const struct profile *p, const struct shmseg_table *t)
{
    uid_t euid = geteuid();
    uint64_t orphans = 0, leftovers = 0;

    m->orphans.known = m->leftovers.known = t != NULL;
    for (size_t i = 0; t && i < t->count; i++) {
        struct orphans_verdict v;

        /* A persistent key's segment is meant to outlive its creator
         * (--remove-orphans never removes it, so an alert on it could
         * never be cleared). */
        status_judge_segment(&t->items[i], p, euid, &v);
        leftovers += v.probe_leftover;
        orphans += v.candidate && !v.persistent;
    }
    m->orphans.value = orphans;
    m->leftovers.value = leftovers;
}

void metrics_set_state(struct metrics *m, const struct state *s)
{
    CLEANUP_FREE struct state *loaded = s ? NULL : malloc(sizeof(*loaded));

    if (!s) {
        if (!loaded)
            return;
        /* A damaged file is as good as none here; apply repairs it. */
        (void)state_load(STATE_DIR, loaded);
        s = loaded;
    }
    m->last_run = s->last_run;
    m->last_success_end = s->last_success_end;
}

/* ---- the spool ------------------------------------------------------------- */

void metrics_read_spool(struct metrics *m, const struct profile *p)
{
    struct spool_figures f;
    struct metrics_u64 *counts[SPOOL_COUNTERS] = { &m->dropped, &m->quarantined, &m->rejected };

    /* Without report.url nothing is spooled: no figures, not zeros. */
    if (!p->report.url || !p->report.spool_dir || spool_peek(p->report.spool_dir, &f) < 0)
        return;
    m->waiting = (struct metrics_u64){ true, f.waiting };
    for (int c = 0; c < SPOOL_COUNTERS; c++)
        *counts[c] = (struct metrics_u64){ f.count_known[c], f.count[c] };
}

/* ---- the text exposition format --------------------------------------------- */

struct label {
    const char *name, *value;
};

/* Backslash, double quote and line feed escaped, as the exposition format
 * wants a label value. */
static void label_value(FILE *out, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\')
            fputs("\\\\", out);
        else if (*c == '"')
            fputs("\\\"", out);
        else if (*c == '\n')
            fputs("\\n", out);
        else
            fputc(*c, out);
    }
}

static void header(FILE *out, const char *name, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static void sample(FILE *out, const char *name, const struct label *labels, size_t n, const char *value)
{
    fputs(name, out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s%s=\"", i ? "," : "{", labels[i].name);
        label_value(out, labels[i].value);
        fputc('"', out);
    }
    fprintf(out, "%s %s\n", n ? "}" : "", value);
}

static const char *u64_text(uint64_t v, char buf[24])
{
    (void)snprintf(buf, 24, "%" PRIu64, v);
    return buf;
}

/* A family of one unlabelled sample, left out when not known. */
static void gauge(FILE *out, const char *name, const char *help, struct metrics_u64 v)
{
    char text[24];

    if (!v.known)
        return;
    header(out, name, help);
    sample(out, name, NULL, 0, u64_text(v.value, text));
}

static void render_limit(FILE *out, const struct metrics *m, enum sizing_key_id key)
{
    const struct metrics_key *k = &m->keys[key];
    struct label l[2] = { { "key", sizing_key_name(key) }, { "value", "running" } };
    char name[32], help[256], text[24];

    if (!k->running.known && !k->managed)
        return;
    (void)snprintf(name, sizeof(name), "shmprov_limit_%s", sizing_key_unit(key));
    (void)snprintf(help, sizeof(help),
                   "%s in %s: running (the kernel now), profile (what apply sets), derived (what %s, before the "
                   "policy).", sizing_key_name(key), sizing_key_unit(key),
                   key == SIZING_KEY_SHMMNI ? "the profile asks" : "the sizing rules or the explicit limit ask");
    header(out, name, help);
    if (k->running.known)
        sample(out, name, l, 2, u64_text(k->running.value, text));
    if (!k->managed)
        return;
    l[1].value = "profile";
    sample(out, name, l, 2, u64_text(k->profile, text));
    l[1].value = "derived";
    sample(out, name, l, 2, u64_text(k->derived, text));
}

static void render_in_sync(FILE *out, const struct metrics *m)
{
    static const char *const checks[METRICS_CHECKS] = { "runtime", "dropin", "boot" };
    bool any = false;

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        for (int c = 0; c < METRICS_CHECKS; c++) {
            struct label l[2] = { { "key", sizing_key_name((enum sizing_key_id)id) }, { "check", checks[c] } };

            if (!m->keys[id].managed || m->keys[id].in_sync[c] < 0)
                continue;
            if (!any)
                header(out, "shmprov_in_sync",
                       "1 when the key matches the profile: runtime (the running kernel, policy-aware), dropin "
                       "(the drop-in's bytes), boot (shmprov's drop-in wins the key under systemd-sysctl's "
                       "rules); 0 is drift, see 'shmprov verify'.");
            any = true;
            sample(out, "shmprov_in_sync", l, 2, m->keys[id].in_sync[c] ? "1" : "0");
        }
    }
}

/* kernel.shmall's pages times the page size may not fit in 64 bits (the
 * kernel's default does not): then a float, which is what Prometheus
 * keeps anyway. */
static void render_shmall_bytes(FILE *out, const struct metrics *m)
{
    const struct metrics_u64 *pages = &m->keys[SIZING_KEY_SHMALL].running;
    char text[40];

    if (!pages->known || m->page_size == 0)
        return;
    if (pages->value > UINT64_MAX / m->page_size)
        (void)snprintf(text, sizeof(text), "%.17g", (double)pages->value * (double)m->page_size);
    else
        (void)u64_text(pages->value * m->page_size, text);
    header(out, "shmprov_shmall_bytes", "kernel.shmall (running) times the page size, in bytes.");
    sample(out, "shmprov_shmall_bytes", NULL, 0, text);
}

/* The largest segment shmget() would create now, as status computes it. */
static void render_headroom(FILE *out, const struct metrics *m)
{
    const struct metrics_key *k = m->keys;
    enum sizing_key_id by;
    uint64_t bytes;
    char text[24];
    struct label l = { "limited_by", NULL };

    if (!k[SIZING_KEY_SHMMAX].running.known || !k[SIZING_KEY_SHMALL].running.known ||
        !k[SIZING_KEY_SHMMNI].running.known || !m->segments.known || !m->pages.known || m->page_size == 0)
        return;
    bytes = sizing_headroom(k[SIZING_KEY_SHMMAX].running.value, k[SIZING_KEY_SHMALL].running.value,
                            k[SIZING_KEY_SHMMNI].running.value, m->page_size, m->pages.value, m->segments.value, &by);
    l.value = sizing_key_name(by);
    header(out, "shmprov_headroom_bytes",
           "The largest segment that can be created now, in bytes, and the limit that decides it.");
    sample(out, "shmprov_headroom_bytes", &l, 1, u64_text(bytes, text));
}

static void render_usage(FILE *out, const struct metrics *m)
{
    gauge(out, "shmprov_segments", "System V shared memory segments in this IPC namespace.", m->segments);
    gauge(out, "shmprov_segments_bytes", "Bytes of all segments.", m->bytes);
    gauge(out, "shmprov_segments_pages", "Pages all segments hold, counted against kernel.shmall.", m->pages);
    gauge(out, "shmprov_largest_segment_bytes", "Bytes of the largest segment.", m->largest);
    render_headroom(out, m);
    gauge(out, "shmprov_orphan_candidates",
          "Segments nothing is attached to whose creator and last user are gone (keys the profile marks "
          "persistent not counted); 'shmprov status --remove-orphans' removes them.",
          m->orphans);
    gauge(out, "shmprov_probe_leftovers",
          "Test segments a killed shmprov left behind; the next 'shmprov apply' removes them.", m->leftovers);
}

static void render_last_apply(FILE *out, const struct metrics *m)
{
    const struct state_run *r = &m->last_run;
    struct label l = { "result", r->result };
    char text[48];

    if (r->known) {
        header(out, "shmprov_last_apply",
               "The last apply's result (changed, unchanged, refused, failed, not-applicable): one series, 1.");
        sample(out, "shmprov_last_apply", &l, 1, "1");
        gauge(out, "shmprov_last_apply_timestamp_seconds", "When the last apply ended, in unix seconds.",
              (struct metrics_u64){ true, r->end });
        (void)snprintf(text, sizeof(text), "%" PRIu64 ".%03u", r->duration_ms / 1000,
                       (unsigned)(r->duration_ms % 1000));
        header(out, "shmprov_last_apply_duration_seconds", "How long the last apply took, in seconds.");
        sample(out, "shmprov_last_apply_duration_seconds", NULL, 0, text);
    }
    gauge(out, "shmprov_last_successful_apply_timestamp_seconds",
          "When the last apply whose result was changed or unchanged ended, in unix seconds.",
          (struct metrics_u64){ m->last_success_end != 0, m->last_success_end });
    gauge(out, "shmprov_last_probe_passed",
          "1 when the last apply's test allocation passed, 0 when it failed; absent when it ran none.",
          (struct metrics_u64){ r->known && r->probe_passed >= 0, r->probe_passed > 0 });
}

static void render_spool(FILE *out, const struct metrics *m)
{
    gauge(out, "shmprov_reports_waiting", "Reports waiting in the spool for delivery ('shmprov flush').",
          m->waiting);
    gauge(out, "shmprov_reports_dropped", "Reports dropped by the spool's bounds since the last delivered report.",
          m->dropped);
    gauge(out, "shmprov_reports_quarantined",
          "Damaged reports moved to the spool's quarantine since the last delivered report.", m->quarantined);
    gauge(out, "shmprov_reports_rejected",
          "Reports the collector refused as malformed since the last delivered report.", m->rejected);
}

static void render_info(FILE *out, const struct metrics *m)
{
    char page[24];
    const struct label l[] = {
        { "version", SHMPROV_VERSION }, { "profile_sha256", m->profile_sha256 }, { "tier", m->tier },
        { "workload", m->workload },    { "policy", m->policy },                 { "page_size", page },
    };

    (void)u64_text(m->page_size, page);
    header(out, "shmprov_info", "shmprov's version, the profile's SHA-256, tier, workload and policy, the page size.");
    sample(out, "shmprov_info", l, sizeof(l) / sizeof(l[0]), "1");
}

int metrics_render(const struct metrics *m, FILE *out)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        render_limit(out, m, (enum sizing_key_id)id);
    render_in_sync(out, m);
    render_shmall_bytes(out, m);
    render_usage(out, m);
    render_last_apply(out, m);
    render_spool(out, m);
    render_info(out, m);
    return ferror(out) ? -EIO : 0;
}

/* ---- the textfile -------------------------------------------------------------- */

/* fsutil_write_atomic() refuses a symlink at its target: for the drop-in,
 * a link is someone's configuration. Here it is only in the way, and
 * following it would let whoever made it choose the file root writes. So
 * the text goes whole into "PATH.new" (no ".prom": node_exporter never
 * reads it), which is then renamed over the link: rename replaces the link
 * itself. Not synced after: metrics are rewritten at every run. */
static int write_textfile(const char *path, const char *text, size_t len)
{
    char next[PROFILE_TEXTFILE_MAX + 8];
    struct stat st;
    int r = fsutil_write_atomic(path, text, len, 0644);

    if (r != -ELOOP || TEMP_FAILURE_RETRY(lstat(path, &st)) < 0 || !S_ISLNK(st.st_mode))
        return r;
    if ((size_t)snprintf(next, sizeof(next), "%s.new", path) >= sizeof(next))
        return -ENAMETOOLONG;
    r = fsutil_write_atomic(next, text, len, 0644);
    if (r < 0)
        return r;
    if (TEMP_FAILURE_RETRY(rename(next, path)) < 0) {
        r = -errno;
        (void)unlink(next);
        return r;
    }
    log_info("replaced the symbolic link at %s with the metrics (never followed)", path);
    return 0;
}

void metrics_publish(const struct metrics *m, const struct profile *p)
{
    const char *path = p->metrics_textfile;
    CLEANUP_FREE char *text = NULL;
    size_t len = 0;
    FILE *out;
    int r;

    if (!path)
        return;
    out = open_memstream(&text, &len);
    r = out ? metrics_render(m, out) : -errno;
    if (out && fclose(out) != 0 && r == 0)
        r = -ENOMEM;
    if (r == 0) {
        /* What a run killed mid-write left beside it. */
        (void)fsutil_remove_stale_temps(path, STALE_TEMP_SECONDS);
        r = write_textfile(path, text, len);
    }
    if (r == -ENOENT)
        log_warn("cannot write the metrics to %s: its directory does not exist (node_exporter's textfile "
                 "directory: is prometheus-node-exporter installed?)", path);
    else if (r == -EEXIST)
        log_warn("cannot write the metrics to %s: something other than a regular file is there", path);
    else if (r < 0)
        log_warn("cannot write the metrics to %s: %s", path, strerror(-r));
}

void metrics_publish_plan(const struct plan *plan, const struct conflicts *c, const struct shmseg_table *t,
                          const struct state *s)
{
    CLEANUP_FREE struct metrics *m = malloc(sizeof(*m));

    if (!m) {
        log_warn("cannot write the metrics to %s: %s", plan->profile->metrics_textfile, strerror(ENOMEM));
        return;
    }
    metrics_init(m, plan->profile, plan);
    metrics_set_boot(m, plan, c);
    metrics_count_segments(m, plan->profile, t);
    metrics_set_state(m, s);
    metrics_read_spool(m, plan->profile);
    metrics_publish(m, plan->profile);
}

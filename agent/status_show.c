#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "host.h"
#include "jsonobj.h"
#include "jsonout.h"
#include "removal.h"
#include "sizes.h"
#include "status_show.h"

#define STATUS_CANDIDATES_LISTED 20

/* ---- facts shared by both renderings ------------------------------------ */

/* Where a key's value comes from at boot under one set of rules. */
enum boot_source { BOOT_UNKNOWN, BOOT_KERNEL_DEFAULT, BOOT_DROPIN, BOOT_OTHER_FILE };

static enum boot_source boot_source(const struct status *s, enum sysctld_rules rules, enum sizing_key_id key,
                                    const struct sysctld_assignment **ret_winner)
{
    const struct sysctld_assignment *w = &s->boot.winners[key][rules];

    *ret_winner = NULL;
    if (!s->boot_known || s->boot.uncertain[rules])
        return BOOT_UNKNOWN;
    if (!w->known)
        return BOOT_KERNEL_DEFAULT;
    *ret_winner = w;
    return strcmp(w->path, s->plan->dropin_path) == 0 ? BOOT_DROPIN : BOOT_OTHER_FILE;
}

static const char *boot_source_name(enum boot_source b)
{
    static const char *const names[] = { "unknown", "kernel-default", "dropin", "other-file" };
    return names[b];
}

static const char *overcommit_name(int mode)
{
    static const char *const names[] = { "heuristic", "always", "strict" };
    return mode >= 0 && mode <= 2 ? names[mode] : "unknown";
}

/* What vm.overcommit_memory means for the next shmget(). */
static void overcommit_meaning(const struct host_facts *h, char *buf, size_t len)
{
    static const char *const meanings[] = {
        "a new segment is refused (ENOMEM) only when it is larger than RAM + swap; its memory is allocated when "
        "first touched",
        "a new segment is never refused for lack of memory; memory is allocated when first touched, and the OOM "
        "killer acts if it runs out",
        "every new segment is charged in full against CommitLimit (SHM_NORESERVE is ignored): one larger than "
        "what is left fails with ENOMEM",
    };
    int mode = h->overcommit_memory;
    char limit[32], avail[32];

    if (mode < 0 || mode > 2) {
        (void)snprintf(buf, len, "unknown (/proc/sys/vm/overcommit_memory unreadable)");
    } else if (mode < 2 || !h->commit_known) {
        (void)snprintf(buf, len, "%s", meanings[mode]);
    } else {
        sizes_format_human(h->commit_limit_bytes, limit, sizeof(limit));
        sizes_format_human(h->committed_bytes < h->commit_limit_bytes ? h->commit_limit_bytes - h->committed_bytes
                                                                      : 0, avail, sizeof(avail));
        (void)snprintf(buf, len, "every new segment is charged in full against CommitLimit %s (SHM_NORESERVE "
                                 "is ignored); %s is left, so a larger segment fails with ENOMEM even within "
                                 "the limits", limit, avail);
    }
}

static const char *owner_name(uint32_t uid, char *buf, size_t len)
{
    // cppcheck-suppress getpwuidCalled ; shmprov is single-threaded: nothing else uses getpwuid()'s static buffer
    struct passwd *pw = getpwuid((uid_t)uid);

    if (pw && pw->pw_name)
        (void)snprintf(buf, len, "%s", pw->pw_name);
    else
        (void)snprintf(buf, len, "%" PRIu32, uid);
    return buf;
}

/* count units of unit_bytes for people: shmall's pages x page size may
 * not fit in 64 bits. */
static void human_size(uint64_t count, uint64_t unit_bytes, char *buf, size_t len)
{
    if (unit_bytes && count > UINT64_MAX / unit_bytes)
        (void)snprintf(buf, len, "more than 16 EiB");
    else
        sizes_format_human(count * unit_bytes, buf, len);
}

/* ---- text ----------------------------------------------------------------- */

/* " of LIMIT (kernel.KEY), P %": what a usage line counts against. */
static void print_against(FILE *out, const struct status *s, enum sizing_key_id key, uint64_t used)
{
    uint64_t limit = s->plan->host.current.value[key];
    double p = limit ? (double)used * 100.0 / (double)limit : 0.0;

    fprintf(out, " of %" PRIu64 " (%s), ", limit, sizing_key_name(key));
    if (used > 0 && p < 0.1)
        fputs("<0.1 %\n", out);
    else
        fprintf(out, "%.1f %%\n", p);
}

static void print_boot_line(FILE *out, const char *label, enum boot_source b, const struct sysctld_assignment *w)
{
    fprintf(out, "      at boot%s: ", label);
    switch (b) {
    case BOOT_KERNEL_DEFAULT:
        fputs("no file sets it: the kernel's default\n", out);
        break;
    case BOOT_DROPIN:
    case BOOT_OTHER_FILE:
        fprintf(out, "%s %s:%u sets %s%s\n", b == BOOT_DROPIN ? "shmprov's drop-in" : "another file", w->path,
                w->line, w->value, w->glob ? " (by a pattern)" : "");
        break;
    default:
        fputs("unknown (a sysctl.d file could not be analysed; see 'shmprov verify')\n", out);
    }
}

static void print_limit(FILE *out, const struct status *s, enum sizing_key_id key)
{
    const struct plan *plan = s->plan;
    const struct host_facts *h = &plan->host;
    const struct sizing_key *k = &plan->sizing.keys[key];
    const struct sysctld_assignment *w[SYSCTLD_RULE_SETS];
    enum boot_source b[SYSCTLD_RULE_SETS];
    char human[32];

    fprintf(out, "  %-14s", sizing_key_name(key));
    if (!h->current.known[key]) {
        fputs("unknown (cannot read it)\n", out);
    } else {
        fprintf(out, "%" PRIu64 " %s", h->current.value[key], sizing_key_unit(key));
        if (key != SIZING_KEY_SHMMNI) {
            human_size(h->current.value[key], key == SIZING_KEY_SHMALL ? h->page_size : 1, human, sizeof(human));
            fprintf(out, " (%s)", human);
        }
        fputs(h->current.value[key] == removal_kernel_default(key) ? ", the kernel's default\n" : "\n", out);
    }

    for (enum sysctld_rules r = 0; r < SYSCTLD_RULE_SETS; r++)
        b[r] = boot_source(s, r, key, &w[r]);
    if (b[0] == b[1] && (!w[0] || (strcmp(w[0]->path, w[1]->path) == 0 && w[0]->line == w[1]->line))) {
        print_boot_line(out, "", b[0], w[0]);
    } else {
        print_boot_line(out, " (systemd-sysctl)", b[0], w[0]);
        print_boot_line(out, " (sysctl --system)", b[1], w[1]);
    }

    if (!k->managed) {
        fputs("      profile: does not set it\n", out);
        return;
    }
    fprintf(out, "      profile: wants %s%" PRIu64 ": ",
            plan->profile->policy == PROFILE_POLICY_RAISE_ONLY ? "at least " : "", k->derived);
    if (plan_key_in_sync(plan, key))
        fputs("matches\n", out);
    else
        fprintf(out, "differs ('shmprov apply' would %s it)\n", sizing_action_name(k->action));
}

static void print_usage(FILE *out, const struct status *s)
{
    const struct sizing_usage *t = &s->table;
    char human[32];

    if (!s->kernel_known && !s->segments) {
        fputs("\nUsage: unknown (neither shmctl(SHM_INFO) nor /proc/sysvipc/shm could be read)\n", out);
        return;
    }
    fprintf(out, "\nUsage (%s)\n", s->kernel_known ? "the kernel's counters, shmctl SHM_INFO" : "/proc/sysvipc/shm");
    fprintf(out, "  segments      %" PRIu64, s->segments_in_use);
    print_against(out, s, SIZING_KEY_SHMMNI, s->segments_in_use);
    fputs("  memory        ", out);
    if (s->segments) {
        sizes_format_human(t->bytes, human, sizeof(human));
        fprintf(out, "%" PRIu64 " bytes (%s) in ", t->bytes, human);
    }
    fprintf(out, "%" PRIu64 " pages", s->pages_in_use);
    print_against(out, s, SIZING_KEY_SHMALL, s->pages_in_use);
    if (s->kernel_known)
        fprintf(out, "  resident      %" PRIu64 " pages, swapped %" PRIu64 " pages\n", s->kernel.rss_pages,
                s->kernel.swap_pages);
    if (!s->segments) {
        fputs("  largest       unknown (the segment table could not be read)\n", out);
        return;
    }
    sizes_format_human(t->largest_segment, human, sizeof(human));
    fprintf(out, "  largest       %" PRIu64 " bytes (%s)", t->largest_segment, human);
    print_against(out, s, SIZING_KEY_SHMMAX, t->largest_segment);
}

static void print_headroom_and_overcommit(FILE *out, const struct status *s)
{
    const struct host_facts *h = &s->plan->host;
    char human[32], meaning[400];

    if (!s->headroom.known) {
        fputs("\nHeadroom: unknown\n", out);
    } else if (s->headroom.bytes == 0) {
        fprintf(out, "\nHeadroom: no new segment can be created now (%s is used up)\n",
                sizing_key_name(s->headroom.limited_by));
    } else {
        sizes_format_human(s->headroom.bytes, human, sizeof(human));
        fprintf(out, "\nHeadroom: a new segment of up to %" PRIu64 " bytes (%s) can be created now (limited by %s)\n",
                s->headroom.bytes, human, sizing_key_name(s->headroom.limited_by));
    }
    overcommit_meaning(h, meaning, sizeof(meaning));
    if (h->overcommit_memory >= 0)
        fprintf(out, "Overcommit: vm.overcommit_memory = %d (%s): %s\n", h->overcommit_memory,
                overcommit_name(h->overcommit_memory), meaning);
    else
        fprintf(out, "Overcommit: %s\n", meaning);
}

static void print_namespace(FILE *out, const struct status *s)
{
    const struct status_namespace *ns = &s->ns;

    if (!ns->ipc_known)
        fputs("IPC namespace: unknown (/proc/self/ns/ipc unreadable)\n", out);
    else if (ns->ipc_initial)
        fprintf(out, "IPC namespace: the host's (ipc:[%" PRIu64 "]): these limits and segments are the host's\n",
                ns->ipc_ino);
    else
        fprintf(out, "IPC namespace: private (ipc:[%" PRIu64 "]): the limits and segments below belong to this "
                     "namespace only, not to the host\n", ns->ipc_ino);
    fprintf(out, "Container: %s\n", ns->container ? ns->container : "none detected");
    fprintf(out, "Runtime limits: %s\n", s->plan->host.runtime_write_errno == 0
                                              ? "writable here"
                                              : host_runtime_write_reason(s->plan->host.runtime_write_errno));
}

static void print_segment_row(FILE *out, const struct shmseg *seg, const struct orphans_verdict *v)
{
    char owner[64], perms[10], state[128], creator[40], last[40];

    shmseg_perms_text(seg->mode, perms);
    (void)snprintf(creator, sizeof(creator), "%" PRId64 " %s", seg->cpid, orphans_pid_state_name(v->creator));
    if (v->last == ORPHANS_PID_NEVER)
        (void)snprintf(last, sizeof(last), "-");
    else
        (void)snprintf(last, sizeof(last), "%" PRId64 " %s", seg->lpid, orphans_pid_state_name(v->last));
    (void)snprintf(state, sizeof(state), "%s%s%s%s", seg->mode & SHMSEG_MODE_DEST ? ", marked for destroy" : "",
                   seg->mode & SHMSEG_MODE_LOCKED ? ", locked" : "",
                   v->probe_leftover ? ", probe leftover" : "",
                   !v->candidate ? "" : v->persistent ? ", orphan candidate, persistent (kept)" : ", orphan candidate");
    fprintf(out, "  0x%08x %10" PRId32 " %-10s %s %15" PRIu64 " %6" PRIu64 "  %-18s ", (unsigned)seg->key, seg->id,
            owner_name(seg->uid, owner, sizeof(owner)), perms, seg->size, seg->nattch, creator);
    if (state[0])
        fprintf(out, "%-18s %s\n", last, state + 2); /* state starts with ", " */
    else
        fprintf(out, "%s\n", last);
}

/* Whole pages of kernel.shmall a segment holds. */
static uint64_t pages_held(const struct status *s, uint64_t bytes)
{
    uint64_t page = s->plan->host.page_size;

    return page ? bytes / page + (bytes % page != 0) : 0;
}

/* One line per test segment a killed shmprov left behind, and the fix. */
static void print_leftovers(FILE *out, const struct status *s)
{
    const struct shmseg_table *t = s->segments;
    char human[32];

    for (size_t i = 0; i < t->count; i++) {
        const struct shmseg *seg = &t->items[i];

        if (!s->verdicts[i].probe_leftover)
            continue;
        sizes_format_human(seg->size, human, sizeof(human));
        fprintf(out, "  probe leftover: a test segment of %" PRIu64 " bytes (%s), id %" PRId32 ", key 0x%08x, was left "
                     "behind by a killed shmprov (pid %" PRId64 ", gone); it holds %" PRIu64 " pages of kernel.shmall. "
                     "'shmprov apply' removes it (so does 'shmprov status --remove-orphans')\n",
                seg->size, human, seg->id, (unsigned)seg->key, seg->cpid, pages_held(s, seg->size));
    }
}

static void print_segments(FILE *out, const struct status *s, bool with_segments)
{
    const struct shmseg_table *t = s->segments;

    if (!t) {
        fprintf(out, "\nSegments: unknown (cannot read /proc/sysvipc/shm: %s)\n",
                host_segments_reason(s->segments_errno));
        return;
    }
    fprintf(out, "\nSegments: %zu; orphan candidates: %zu", t->count, s->norphans);
    if (s->npersistent_orphans)
        fprintf(out, " (%zu persistent by the profile, never removed)", s->npersistent_orphans);
    if (s->nleftovers)
        fprintf(out, "; probe leftovers: %zu", s->nleftovers);
    fputc('\n', out);
    print_leftovers(out, s);
    /* Without --segments, only the candidates and leftovers are listed. */
    if (with_segments ? t->count : s->norphans + s->nleftovers)
        fprintf(out, "  %-10s %10s %-10s %-9s %15s %6s  %-18s %-18s %s\n", "KEY", "ID", "OWNER", "PERMS", "BYTES",
                "NATTCH", "CREATOR", "LAST", "STATE");
    for (size_t i = 0, listed = 0; i < t->count; i++) {
        if (!with_segments && !s->verdicts[i].candidate && !s->verdicts[i].probe_leftover)
            continue;
        /* Without --segments, a screenful of candidates, not thousands. */
        if (!with_segments && ++listed > STATUS_CANDIDATES_LISTED) {
            fprintf(out, "  ... and %zu more orphan candidates\n",
                    s->norphans + s->nleftovers - STATUS_CANDIDATES_LISTED);
            break;
        }
        print_segment_row(out, &t->items[i], &s->verdicts[i]);
    }
    if (!with_segments && t->count)
        fputs("  (every segment: 'shmprov status --segments')\n", out);
    if (s->norphans > s->npersistent_orphans)
        fputs("  orphan candidates: nothing attached, creator and last user gone; listed, never removed "
              "unless 'shmprov status --remove-orphans'\n", out);
}

int status_print_text(const struct status *s, bool with_segments, FILE *out)
{
    const struct plan *plan = s->plan;
    const struct host_facts *h = &plan->host;

    fprintf(out, "shmprov status: %s, Linux %s, page size %" PRIu64 " bytes\n", h->hostname, h->kernel_release,
            h->page_size);
    fprintf(out, "Profile: %s%s\n", plan->profile->path,
            plan->profile->builtin ? " (" PROFILE_BUILTIN_NOTE ")" : "");
    print_namespace(out, s);
    fputs("\nLimits (running now)\n", out);
    for (enum sizing_key_id key = 0; key < SIZING_KEY_COUNT; key++)
        print_limit(out, s, key);
    print_usage(out, s);
    print_headroom_and_overcommit(out, s);
    print_segments(out, s, with_segments);
    return ferror(out) ? -1 : 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static json_object *json_boot(const struct status *s, enum sizing_key_id key)
{
    json_object *o = json_object_new_object();

    for (enum sysctld_rules r = 0; r < SYSCTLD_RULE_SETS; r++) {
        const struct sysctld_assignment *w;
        enum boot_source b = boot_source(s, r, key, &w);
        json_object *src = json_object_new_object();

        json_object_object_add(src, "source", jsonout_string(boot_source_name(b)));
        json_object_object_add(src, "file", w ? jsonout_string(w->path) : NULL);
        json_object_object_add(src, "line", w ? json_object_new_uint64(w->line) : NULL);
        json_object_object_add(src, "value", w ? jsonout_string(w->value) : NULL);
        json_object_object_add(o, sysctld_rules_name(r), src);
    }
    return o;
}

static json_object *json_limits(const struct status *s)
{
    const struct plan *plan = s->plan;
    json_object *o = json_object_new_object();

    for (enum sizing_key_id key = 0; key < SIZING_KEY_COUNT; key++) {
        const struct sizing_key *k = &plan->sizing.keys[key];
        bool known = plan->host.current.known[key];
        uint64_t value = plan->host.current.value[key];
        json_object *l = json_object_new_object(), *prof = json_object_new_object();

        jsonout_add_u64(l, "value", known, value);
        json_object_object_add(l, "unit", jsonout_string(sizing_key_unit(key)));
        json_object_object_add(l, "kernel_default",
                               json_object_new_boolean(known && value == removal_kernel_default(key)));
        json_object_object_add(l, "boot", json_boot(s, key));
        json_object_object_add(prof, "managed", json_object_new_boolean(k->managed));
        jsonout_add_u64(prof, "wants", k->managed, k->derived);
        json_object_object_add(prof, "matches",
                               k->managed ? json_object_new_boolean(plan_key_in_sync(plan, key)) : NULL);
        json_object_object_add(l, "profile", prof);
        json_object_object_add(o, sizing_key_name(key), l);
    }
    return o;
}

static json_object *json_usage(const struct status *s)
{
    json_object *o;

    if (!s->kernel_known && !s->segments)
        return NULL;
    o = json_object_new_object();
    json_object_object_add(o, "source", jsonout_string(s->kernel_known ? "SHM_INFO" : "/proc/sysvipc/shm"));
    jsonout_add_u64(o, "segments", true, s->segments_in_use);
    jsonout_add_u64(o, "pages", true, s->pages_in_use);
    jsonout_add_u64(o, "bytes", s->segments != NULL, s->table.bytes);
    jsonout_add_u64(o, "largest_segment", s->segments != NULL, s->table.largest_segment);
    jsonout_add_u64(o, "rss_pages", s->kernel_known, s->kernel.rss_pages);
    jsonout_add_u64(o, "swap_pages", s->kernel_known, s->kernel.swap_pages);
    return o;
}

static json_object *json_namespace(const struct status *s)
{
    const struct status_namespace *ns = &s->ns;
    json_object *o = json_object_new_object();

    jsonout_add_u64(o, "ipc_inode", ns->ipc_known, ns->ipc_ino);
    json_object_object_add(o, "ipc_initial", ns->ipc_known ? json_object_new_boolean(ns->ipc_initial) : NULL);
    json_object_object_add(o, "pid_initial", json_object_new_boolean(ns->pid_initial));
    json_object_object_add(o, "user_initial", json_object_new_boolean(ns->user_initial));
    json_object_object_add(o, "container", ns->container ? jsonout_string(ns->container) : NULL);
    json_object_object_add(o, "runtime_writable", json_object_new_boolean(s->plan->host.runtime_write_errno == 0));
    json_object_object_add(o, "runtime_reason",
                           jsonout_string(host_runtime_write_reason(s->plan->host.runtime_write_errno)));
    return o;
}

static json_object *json_overcommit(const struct host_facts *h)
{
    json_object *o = json_object_new_object();
    char meaning[400];

    overcommit_meaning(h, meaning, sizeof(meaning));
    json_object_object_add(o, "mode", h->overcommit_memory >= 0 ? json_object_new_int(h->overcommit_memory) : NULL);
    json_object_object_add(o, "name", jsonout_string(overcommit_name(h->overcommit_memory)));
    json_object_object_add(o, "meaning", jsonout_string(meaning));
    jsonout_add_u64(o, "commit_limit_bytes", h->commit_known, h->commit_limit_bytes);
    jsonout_add_u64(o, "committed_bytes", h->commit_known, h->committed_bytes);
    return o;
}

static json_object *json_segment(const struct shmseg *seg, const struct orphans_verdict *v)
{
    json_object *o = json_object_new_object();
    char key[16], owner[64], perms[8];

    (void)snprintf(key, sizeof(key), "0x%08x", (unsigned)seg->key);
    (void)snprintf(perms, sizeof(perms), "%03o", seg->mode & 0777);
    json_object_object_add(o, "key", jsonout_string(key));
    json_object_object_add(o, "id", json_object_new_int(seg->id));
    json_object_object_add(o, "owner", jsonout_string(owner_name(seg->uid, owner, sizeof(owner))));
    jsonout_add_u64(o, "uid", true, seg->uid);
    jsonout_add_u64(o, "gid", true, seg->gid);
    json_object_object_add(o, "perms", jsonout_string(perms));
    jsonout_add_u64(o, "bytes", true, seg->size);
    jsonout_add_u64(o, "nattch", true, seg->nattch);
    json_object_object_add(o, "creator_pid", json_object_new_int64(seg->cpid));
    json_object_object_add(o, "creator", jsonout_string(orphans_pid_state_name(v->creator)));
    json_object_object_add(o, "last_pid", json_object_new_int64(seg->lpid));
    json_object_object_add(o, "last", jsonout_string(orphans_pid_state_name(v->last)));
    json_object_object_add(o, "marked_for_destroy", json_object_new_boolean((seg->mode & SHMSEG_MODE_DEST) != 0));
    json_object_object_add(o, "locked", json_object_new_boolean((seg->mode & SHMSEG_MODE_LOCKED) != 0));
    jsonout_add_u64(o, "rss_bytes", true, seg->rss);
    jsonout_add_u64(o, "swap_bytes", true, seg->swap);
    json_object_object_add(o, "ctime", json_object_new_int64(seg->ctime));
    json_object_object_add(o, "orphan_candidate", json_object_new_boolean(v->candidate));
    json_object_object_add(o, "persistent", json_object_new_boolean(v->persistent));
    json_object_object_add(o, "probe_leftover", json_object_new_boolean(v->probe_leftover));
    return o;
}

/* The test segments a killed shmprov left behind; what 'shmprov apply'
 * removes before it probes. */
static json_object *json_leftovers(const struct status *s)
{
    json_object *a = json_object_new_array();
    char key[16];

    for (size_t i = 0; i < s->segments->count; i++) {
        const struct shmseg *seg = &s->segments->items[i];
        json_object *o;

        if (!s->verdicts[i].probe_leftover)
            continue;
        o = json_object_new_object();
        (void)snprintf(key, sizeof(key), "0x%08x", (unsigned)seg->key);
        json_object_object_add(o, "id", json_object_new_int(seg->id));
        json_object_object_add(o, "key", jsonout_string(key));
        jsonout_add_u64(o, "bytes", true, seg->size);
        jsonout_add_u64(o, "pages", true, pages_held(s, seg->size));
        json_object_object_add(o, "creator_pid", json_object_new_int64(seg->cpid));
        json_object_object_add(o, "ctime", json_object_new_int64(seg->ctime));
        json_object_array_add(a, o);
    }
    return a;
}

json_object *status_to_json(const struct status *s)
{
    const struct plan *plan = s->plan;
    const struct host_facts *h = &plan->host;
    json_object *doc = jsonobj_document("status", plan->profile, plan->sizing.tier, h);
    json_object *headroom = NULL, *segs = NULL;

    json_object_object_add(doc, "namespace", json_namespace(s));
    json_object_object_add(doc, "limits", json_limits(s));
    json_object_object_add(doc, "usage", json_usage(s));
    if (s->headroom.known) {
        headroom = json_object_new_object();
        jsonout_add_u64(headroom, "bytes", true, s->headroom.bytes);
        json_object_object_add(headroom, "limited_by", jsonout_string(sizing_key_name(s->headroom.limited_by)));
    }
    json_object_object_add(doc, "headroom", headroom);
    json_object_object_add(doc, "overcommit", json_overcommit(h));
    if (s->segments) {
        segs = json_object_new_array();
        for (size_t i = 0; i < s->segments->count; i++)
            json_object_array_add(segs, json_segment(&s->segments->items[i], &s->verdicts[i]));
    }
    json_object_object_add(doc, "segments", segs);
    jsonout_add_u64(doc, "orphan_candidates", s->segments != NULL, s->norphans);
    json_object_object_add(doc, "probe_leftovers", s->segments ? json_leftovers(s) : NULL);
    return doc;
}

#include "lastapply.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "state.h"

void lastapply_sha256_on_disk(const char *path, char out[65])
{
    char *bytes = NULL;
    size_t len = 0;

    out[0] = '\0';
    if (fsutil_read_file(path, (size_t)1024 * 1024, true, &bytes, &len, NULL) == 0)
        hash_sha256_hex(bytes, len, out);
    free(bytes);
}

static struct report_drift *next(struct report_drift_list *l)
{
    if (l->count >= REPORT_DRIFT_MAX)
        return NULL;
    memset(&l->items[l->count], 0, sizeof(l->items[0]));
    return &l->items[l->count++];
}

static void runtime_drift(const struct plan *plan, const struct state_apply *last, struct report_drift_list *l)
{
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        struct report_drift *d;

        if (!last->managed[id] || !k->current_known || k->current == last->value[id] || !(d = next(l)))
            continue;
        d->kind = "runtime";
        d->key = sizing_key_name(id);
        (void)snprintf(d->expected, sizeof(d->expected), "%" PRIu64, last->value[id]);
        (void)snprintf(d->found, sizeof(d->found), "%" PRIu64, k->current);
        (void)snprintf(d->message, sizeof(d->message), "%s was %" PRIu64 ", not the %" PRIu64 " shmprov set on %s",
                       d->key, k->current, last->value[id], last->time);
    }
}

static void dropin_drift(const struct plan *plan, const struct state_apply *last, struct report_drift_list *l)
{
    const char *sha = plan->dropin_old_sha256;
    struct report_drift *d;

    if (strcmp(sha, last->dropin_sha256) == 0 || !(d = next(l)))
        return;
    d->kind = plan->dropin_read_errno == ENOENT ? "dropin-missing"
              : plan->dropin_read_errno == ELOOP ? "dropin-symlink"
              : plan->dropin_read_errno != 0     ? "dropin-unreadable"
                                                 : "dropin-edited";
    d->file = plan->dropin_path;
    (void)snprintf(d->expected, sizeof(d->expected), "sha256:%s", last->dropin_sha256);
    if (sha[0])
        (void)snprintf(d->found, sizeof(d->found), "sha256:%s", sha);
    /* The path is in d->file: the sentence stays short. */
    (void)snprintf(d->message, sizeof(d->message), "the drop-in %s since shmprov wrote it on %s",
                   strcmp(d->kind, "dropin-edited") == 0 ? "was edited"
                   : plan->dropin_read_errno == ENOENT  ? "was removed"
                                                        : "was replaced or made unreadable",
                   last->time);
}

void lastapply_drift(const struct plan *plan, struct report_drift_list *ret)
{
    struct state s;

    ret->count = 0;
    if (state_load(STATE_DIR, &s) < 0 || !s.last_apply.known ||
        strcmp(s.last_apply.dropin_path, plan->dropin_path) != 0)
        return;
    runtime_drift(plan, &s.last_apply, ret);
    dropin_drift(plan, &s.last_apply, ret);
}

static void success_record(const struct plan *plan, const struct apply_outcome *out, time_t end,
                           struct state_apply *a)
{
    memset(a, 0, sizeof(*a));
    a->known = true;
    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        a->managed[id] = plan->sizing.keys[id].managed && out->keys[id].after_known;
        a->value[id] = out->keys[id].after;
    }
    (void)snprintf(a->dropin_path, sizeof(a->dropin_path), "%s", plan->dropin_path);
    memcpy(a->dropin_sha256, plan->dropin_new_sha256, sizeof(a->dropin_sha256));
    (void)snprintf(a->profile_sha256, sizeof(a->profile_sha256), "%s", plan->profile->sha256_hex);
    clock_format_utc((uint64_t)end * 1000000000u, false, a->time);
}

#define DROPIN_RECORD_PATH STATE_DIR "/" STATE_DROPIN_RECORD
/* "SHA256  PATH\n": 64 hex digits, two spaces, a path. */
#define DROPIN_RECORD_MAX (4096 + 80)

/* The record apply leaves for a package purge, "" when there is none or
 * it is not in sha256sum's format. */
static void read_dropin_record(char path[4096], char sha[65])
{
    char *text = NULL;
    size_t len = 0, plen;

    path[0] = sha[0] = '\0';
    if (fsutil_read_file(DROPIN_RECORD_PATH, DROPIN_RECORD_MAX, true, &text, &len, NULL) == 0 && len > 67 &&
        strspn(text, "0123456789abcdef") == 64 && memcmp(text + 64, "  ", 2) == 0 && text[len - 1] == '\n') {
        plen = len - 67;
        if (plen < 4096 && memchr(text + 66, '\n', plen) == NULL) {
            memcpy(sha, text, 64);
            sha[64] = '\0';
            memcpy(path, text + 66, plen);
            path[plen] = '\0';
        }
    }
    free(text);
}

int lastapply_recorded_dropin(char path[4096], char sha[65])
{
    struct state *s = malloc(sizeof(*s));

    if (!s)
        return -ENOMEM;
    if (state_load(STATE_DIR, s) == 0 && s->last_apply.known) {
        (void)snprintf(path, 4096, "%s", s->last_apply.dropin_path);
        (void)snprintf(sha, 65, "%s", s->last_apply.dropin_sha256);
    } else {
        read_dropin_record(path, sha);
    }
    free(s);
    return path[0] ? 0 : -ENOENT;
}

/* Rewritten only when it changes: an unchanged apply reads it and stops. */
static void write_dropin_record(const struct state_apply *a)
{
    char line[DROPIN_RECORD_MAX], *old = NULL;
    size_t n, old_len = 0;
    int r;

    n = (size_t)snprintf(line, sizeof(line), "%s  %s\n", a->dropin_sha256, a->dropin_path);
    if (n >= sizeof(line))
        return;
    r = fsutil_read_file(DROPIN_RECORD_PATH, sizeof(line), true, &old, &old_len, NULL);
    if (r < 0 || old_len != n || memcmp(old, line, n) != 0)
        r = fsutil_write_atomic(DROPIN_RECORD_PATH, line, n, 0644);
    free(old);
    if (r < 0)
        log_warn("cannot write %s/%s: %s; a package purge will keep the drop-in", STATE_DIR, STATE_DROPIN_RECORD,
                 strerror(-r));
}

/* The state file could not be written (r): what this run's metrics say is
 * the file as it is, with run laid over it. */
static void not_recorded(int r, const char *what, const char *consequence, const struct state_run *run,
                         struct state *ret)
{
    log_warn("cannot record this %s in %s/%s: %s%s", what, STATE_DIR, STATE_FILE, strerror(-r), consequence);
    (void)state_load(STATE_DIR, ret);
    ret->last_run = *run;
    ret->last_run.known = true;
}

void lastapply_record(const struct plan *plan, const struct apply_outcome *out, const struct state_run *run,
                      struct state *ret)
{
    struct state_apply *a = NULL;
    int r;

    if (out) {
        a = malloc(sizeof(*a));
        if (a)
            success_record(plan, out, (time_t)run->end, a);
    }
    r = out && !a ? -ENOMEM : state_record_run(STATE_DIR, run, a, ret);
    if (r == 0 && a)
        write_dropin_record(a);
    free(a);
    if (r == 0)
        return;
    not_recorded(r, "apply", out ? "; the next report cannot say what drifted since" : "", run, ret);
    if (out)
        ret->last_success_end = run->end;
}

/* The purge's record goes with the drop-in it names; one naming another
 * drop-in (a later apply's) stays. */
static void delete_dropin_record(const char *dropin_path)
{
    char path[4096], sha[65];
    int r;

    read_dropin_record(path, sha);
    if (strcmp(path, dropin_path) != 0)
        return;
    r = fsutil_remove_durable(DROPIN_RECORD_PATH);
    if (r < 0 && r != -ENOENT)
        log_warn("cannot delete %s: %s; a package purge may still delete %s", DROPIN_RECORD_PATH, strerror(-r),
                 dropin_path);
}

void lastapply_record_removal(const char *removed, const struct state_run *run, struct state *ret)
{
    int r = state_record_removal(STATE_DIR, run, removed, ret);

    if (r == 0 && removed)
        delete_dropin_record(removed);
    else if (r < 0)
        not_recorded(r, "removal", removed ? "; the next apply will report the removed drop-in as drift" : "", run,
                     ret);
}

#pragma once
/* Prometheus metrics (README "Monitoring") in the text exposition format
 * 0.0.4, for `status --output prometheus` and node_exporter's textfile
 * collector. The metric names and labels are a contract with the alert
 * rules in packaging/prometheus/: change neither without them.
 *
 * A command fills a struct metrics from what it has already read, so
 * writing the textfile reads almost nothing again. A value that is not
 * known is left out, never guessed: an alert on a missing series stays
 * silent instead of firing on a zero. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conflicts.h"
#include "plan.h"
#include "profile.h"
#include "shmseg.h"
#include "sizing.h"
#include "state.h"

/* shmprov_in_sync{check=...} */
enum metrics_check { METRICS_CHECK_RUNTIME, METRICS_CHECK_DROPIN, METRICS_CHECK_BOOT, METRICS_CHECKS };

/* A value read or computed, or not known. */
struct metrics_u64 {
    bool known;
    uint64_t value;
};

struct metrics_key {
    struct metrics_u64 running; /* the kernel now */
    bool managed;               /* the profile sets the key: profile, derived and in_sync exist */
    uint64_t profile, derived;  /* sizing_key target and derived */
    int in_sync[METRICS_CHECKS]; /* 1, 0, or -1: not known (left out) */
};

struct metrics {
    /* shmprov_info */
    char profile_sha256[65];
    const char *tier, *workload, *policy;
    uint64_t page_size; /* 0: not known (no plan) */
    enum policy policy_id;

    struct metrics_key keys[SIZING_KEY_COUNT];
    struct metrics_u64 segments, pages; /* in use now, as shmget() counts them */
    struct metrics_u64 bytes, largest;  /* from /proc/sysvipc/shm */
    struct metrics_u64 orphans;         /* orphan candidates not persistent and not probe leftovers */
    struct metrics_u64 leftovers;       /* probe segments a killed shmprov left */

    struct state_run last_run;
    uint64_t last_success_end; /* 0: none recorded */

    /* The report spool; not known without report.url or when unreadable. */
    struct metrics_u64 waiting, dropped, quarantined, rejected;
};

/* Starts from the profile and, when there is one, the plan: info, the
 * limits, runtime and drop-in in sync, usage. Nothing else is known yet. */
void metrics_init(struct metrics *m, const struct profile *p, const struct plan *plan);

/* The running value of key is now value (after an apply), or not known;
 * its runtime check follows it. */
void metrics_set_running(struct metrics *m, enum sizing_key_id key, bool known, uint64_t value);

/* Whether the drop-in on disk holds the bytes the profile gives: the
 * drop-in check of every managed key. */
void metrics_set_dropin(struct metrics *m, bool in_sync);

/* The boot check from a boot-order analysis: shmprov's drop-in wins each
 * key it sets under systemd-sysctl's rules (a key the drop-in does not
 * set, raise-only keeping a higher value, has nothing to lose: in sync).
 * c NULL: not known. */
void metrics_set_boot(struct metrics *m, const struct plan *plan, const struct conflicts *c);

/* Orphan candidates and probe leftovers of t, as `shmprov status` counts
 * them; t NULL: not known. */
void metrics_count_segments(struct metrics *m, const struct profile *p, const struct shmseg_table *t);

/* The last apply from the state file (or s when not NULL). */
void metrics_set_state(struct metrics *m, const struct state *s);

/* The spool's figures, read without its lock (spool_peek()). */
void metrics_read_spool(struct metrics *m, const struct profile *p);

/* The text exposition format, every family with # HELP and # TYPE, no
 * timestamps (node_exporter refuses them in a textfile). Returns 0, or a
 * negative errno (-ENOMEM, or the stream's). */
int metrics_render(const struct metrics *m, FILE *out);

/* Renders m into the profile's metrics.textfile, if it sets one:
 * atomically, mode 0644; a symlink at the path is replaced, never followed.
 * Any failure is a warning naming the path and why, never the command's. */
void metrics_publish(const struct metrics *m, const struct profile *p);

/* Fills the metrics from plan (built now), the boot-order analysis c and
 * the segment table t (each NULL: not known) and the state s (NULL: read
 * the state file), then publishes them as metrics_publish() does. */
void metrics_publish_plan(const struct plan *plan, const struct conflicts *c, const struct shmseg_table *t,
                          const struct state *s);

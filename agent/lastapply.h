#pragma once
/* What the last successful apply set (state.h), compared with what this
 * run found: the drift an apply corrects, as Puppet's corrective_change
 * says it. */

#include "apply.h"
#include "plan.h"
#include "report.h"
#include "state.h"

/* The sha256 of the file at path as it stands (never through a symlink),
 * or "" when it is absent or unreadable. */
void lastapply_sha256_on_disk(const char *path, char out[65]);

/* Each managed key and the drop-in that differ, as plan found them, from
 * what the last successful apply left there (none recorded: nothing). */
void lastapply_drift(const struct plan *plan, struct report_drift_list *ret);

/* Records an apply in the state file: run whatever the result, and for a
 * successful one (out not NULL) what it set. A failure to is a warning
 * only. *ret gets the state as recorded, or the file as it is with run laid
 * over it: what the metrics of this run say either way. */
void lastapply_record(const struct plan *plan, const struct apply_outcome *out, const struct state_run *run,
                      struct state *ret);

/* The drop-in the last successful apply left: its path and sha256, from
 * the state file, or from dropin.sha256 when the state file has none.
 * Returns 0, -ENOENT when neither records one, or -ENOMEM. */
int lastapply_recorded_dropin(char path[4096], char sha[65]);

/* Records a run of `shmprov remove` the same way; removed (not NULL: that
 * drop-in is gone) also forgets the apply that left it, and dropin.sha256
 * when it names it. */
void lastapply_record_removal(const char *removed, const struct state_run *run, struct state *ret);

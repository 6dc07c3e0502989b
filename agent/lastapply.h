#pragma once
/* What the last successful apply set (state.h), compared with what this
 * run found: the drift an apply corrects, as Puppet's corrective_change
 * says it. */

#include "apply.h"
#include "plan.h"
#include "report.h"

/* The sha256 of the file at path as it stands (never through a symlink),
 * or "" when it is absent or unreadable. */
void lastapply_sha256_on_disk(const char *path, char out[65]);

/* Each managed key whose running value, and the drop-in whose bytes,
 * differ from what the last successful apply left, as plan found them
 * before this run. Nothing when no apply was recorded, or it recorded
 * another drop-in path. */
void lastapply_drift(const struct plan *plan, struct report_drift_list *ret);

/* Records a successful apply (changed or unchanged, on the live system)
 * in the state file; a failure to is a warning only. */
void lastapply_record(const struct plan *plan, const struct apply_outcome *out);

#pragma once
/* The report of a run: its data (schemas/report.schema.json) and the
 * CloudEvents 1.0 envelope around it. Builds JSON with json-c only;
 * sending and spooling live elsewhere. */

#include <json-c/json.h>
#include <stdint.h>

#include "apply.h"
#include "conflicts.h"
#include "plan.h"

#define REPORT_EVENT_TYPE "dev.shmprov.run.v2"
#define REPORT_DATASCHEMA "https://shmprov.dev/schemas/report.v2.schema.json"
#define REPORT_ID_LEN 36
#define REPORT_DRIFT_MAX 16

/* The stable error codes of a run that did not apply (README "Reports"),
 * beside apply.h's APPLY_ERR_* for one that failed while applying (io and
 * host-unreadable are both). */
#define REPORT_ERR_CONFLICT "conflict"
#define REPORT_ERR_SEGMENTS_IN_USE "segments-in-use"
#define REPORT_ERR_LOCK_TIMEOUT "lock-timeout"
/* shmprov remove: the drop-in is not (or no longer) what shmprov wrote */
#define REPORT_ERR_DROPIN_NOT_OWNED "dropin-not-owned"
/* shmprov remove: what boot would set a key to cannot be known */
#define REPORT_ERR_BOOT_VALUE_UNKNOWN "boot-value-unknown"

struct report_error {
    const char *code;
    const char *step; /* lock, plan, guard, conflicts, ownership, boot-values, dropin, runtime, probe */
    char *message; /* allocated */
};

/* One way the host differs from what it should be. For apply: from what
 * shmprov last set (the state file), found before this run put it back;
 * for verify: from the profile. */
struct report_drift {
    const char *kind; /* runtime, dropin-missing, dropin-edited, dropin-symlink, dropin-unreadable,
                         overridden, probe-leftover */
    const char *key;  /* the key it is about, or NULL */
    const char *file; /* the file it is about, or NULL; borrowed from the plan or the
                         conflicts, which outlive the list */
    char expected[72], found[72]; /* values or sha256s as text, "" when none */
    char message[600];
};

struct report_drift_list {
    unsigned count;
    struct report_drift items[REPORT_DRIFT_MAX];
};

/* Everything a report can say about one run. Only command, result and
 * profile are always set; the rest is NULL when the run stopped before
 * it existed (a lock timeout has no plan, a refusal no outcome). */
struct report_run {
    const char *command; /* "apply", "verify" or "remove" */
    const char *result;  /* changed unchanged refused failed not-applicable in-sync drift dry-run removed */
    const struct profile *profile;
    const struct host_facts *host; /* NULL: read for the report */
    const struct plan *plan;
    const struct conflicts *conflicts; /* as the files stand at the end of the run */
    const struct apply_outcome *out;
    const struct report_error *error;
    const struct report_drift_list *drift;
    bool corrective_change; /* this apply put back what had drifted */
    /* Ask the resolver for the FQDN: only for a report sent now. At boot
     * (--defer-report) the network may not be up, and the boot unit
     * allows no socket at all. */
    bool resolve_fqdn;
    char dropin_sha256_on_disk[65]; /* "" when the drop-in is absent or unreadable */
    uint64_t duration_ms;
};

/* The run as report data. Also what `apply --output json` prints. The
 * reports_* counters are 0 here: delivery sets them from the spool. */
json_object *report_data(const struct report_run *run);

/* Wraps data (consumed) into a structured-mode CloudEvent with a new random
 * UUID id, the host's source, the current time to the microsecond and the
 * host's next sequence number (the state file; left out, with a warning,
 * when it cannot be kept). Returns 0 with the JSON text (malloc'd) and the
 * id, or a negative errno. */
int report_event(json_object *data, char **ret_json, char ret_id[REPORT_ID_LEN + 1]);

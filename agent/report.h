#pragma once
/* The report of a run: its data (schemas/report.schema.json) and
 * the CloudEvents 1.0 envelope around it. Builds JSON with json-c only;
 * sending and spooling live elsewhere. */

#include <json-c/json.h>
#include <stdint.h>

#include "apply.h"
#include "conflicts.h"
#include "plan.h"

#define REPORT_EVENT_TYPE "dev.shmprov.run.v1"
#define REPORT_ID_LEN 36

/* The run as report data. Also what `apply --output json` prints.
 * reports_quarantined is 0 here: delivery sets it, reports_dropped and the
 * *_unknown flags from the spool. */
json_object *report_data(const struct plan *plan, const struct conflicts *c, const struct apply_outcome *out,
                         uint64_t duration_ms, uint64_t reports_dropped);

/* Wraps data (consumed) into a structured-mode CloudEvent with a new random
 * UUID id, the host's source and the current time. Returns 0 with the JSON
 * text (malloc'd) and the id, or a negative errno. */
int report_event(json_object *data, char **ret_json, char ret_id[REPORT_ID_LEN + 1]);

/* "/shmprov/host/<32 hex>": derived from /etc/machine-id (or path) by a
 * one-way hash with an application-specific prefix, so the raw machine id
 * never leaves the host; "/shmprov/host/unknown" without one. */
void report_source(const char *machine_id_path, char *buf, size_t len);

#pragma once
/* Reporting one run, for the commands that report (apply, apply --dry-run
 * --report, verify --report): herd splay, the spool lock, delivery, and
 * one log line saying where the report went. A report that cannot be
 * delivered is spooled, never a failure of the run. */

#include <json-c/json.h>
#include <stdbool.h>

#include "profile.h"

/* Reports data (consumed) to the profile's collector. defer: spool it
 * only (at boot: never wait on the network). */
void runreport_send(const struct profile *p, json_object *data, bool defer);

#pragma once
/* A plan for people (text) and programs (JSON): what `shmprov plan` and
 * `apply --dry-run` print. */

#include <json-c/json.h>
#include <stdio.h>

#include "plan.h"

int plan_print_text(const struct plan *plan, FILE *out);
/* The plan as one JSON object (the caller may add to it, then frees it
 * with json_object_put), or NULL on ENOMEM. */
json_object *plan_to_json(const struct plan *plan);

#pragma once
/* `shmprov status` for people (text) and programs (JSON): both say the
 * same things; JSON keeps exact integers. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>

#include "status.h"

int status_print_text(const struct status *s, bool with_segments, FILE *out);
json_object *status_to_json(const struct status *s);

#pragma once
/* The two promises every JSON document shmprov prints or sends keeps,
 * in one place:
 *
 * Numbers: none above 2^53-1, the largest integer JavaScript, jq and
 * float-based parsers hold exactly. A larger value (the kernel's
 * "unlimited" shmmax/shmall default, 18446744073692774399) is written as
 * null, with its exact decimal text in a "<name>_decimal" string beside
 * it. null with no "<name>_decimal" means unknown.
 *
 * Strings: always valid UTF-8. A string that is not (a hostname or a file
 * name is bytes, not text), or that holds a backslash, is escaped
 * reversibly: each backslash becomes the four characters \x5c and each
 * byte outside a valid UTF-8 sequence \xHH (lowercase hex). Replacing every
 * \xHH by its byte gives the original back. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONOUT_MAX_SAFE_INTEGER UINT64_C(9007199254740991)

/* A json string of s (NULL gives NULL, json's null), escaped as above. */
json_object *jsonout_string(const char *s);
json_object *jsonout_string_len(const char *s, size_t len);

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when
 * the byte at s does not start one: RFC 3629, so no overlong forms, no
 * surrogates, nothing above U+10FFFF. Profiles are checked with it too. */
size_t jsonout_utf8_length(const unsigned char *s, size_t n);

/* Adds name: v, or name: null plus name_decimal: "v" above 2^53-1, or
 * name: null when !known. */
void jsonout_add_u64(json_object *o, const char *name, bool known, uint64_t v);

/* The document as text: pretty for people (--output json), plain for the
 * wire. The text lives as long as doc. */
const char *jsonout_text(json_object *doc, bool pretty);

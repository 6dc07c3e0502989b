#pragma once
/* Sizes as operators write them in profiles: "16GiB", "512M", "4294967296",
 * "60%". Units are powers of 1024, as the sizing guide uses them. Pure code. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum size_kind { SIZE_BYTES, SIZE_PERCENT };

struct size_value {
    enum size_kind kind;
    uint64_t value; /* bytes for SIZE_BYTES, 1..100 for SIZE_PERCENT */
};

/* Parses a plain decimal integer with no sign, no leading zero and no
 * separators; YAML 1.1 would read "010" as octal and "0x10" as hex, and the
 * kernel does the same, so only unambiguous decimal is accepted.
 * Returns 0, or -EINVAL / -ERANGE with *ret_why set to a static message. */
int sizes_parse_uint(const char *text, uint64_t *ret, const char **ret_why);

/* Parses a size with an optional unit, or "N%" when allow_percent.
 * Returns 0, or -EINVAL / -ERANGE with *ret_why set to a static message. */
int sizes_parse(const char *text, bool allow_percent, struct size_value *ret,
                const char **ret_why);

/* "16 GiB", "11.7 GiB", "4096 B": for people, never for files. */
void sizes_format_human(uint64_t bytes, char *buf, size_t len);

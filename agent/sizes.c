#include "sizes.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Spellings people reach for that would be ambiguous (1000 or 1024?). */
static const char *const decimal_units[] = { "KB", "MB", "GB", "TB", "kB", "kb", "mb", "gb", "tb" };

int sizes_parse_uint(const char *text, uint64_t *ret, const char **ret_why)
{
    uint64_t value = 0;
    const char *p = text;

    if (*p == '\0') {
        *ret_why = "empty value";
        return -EINVAL;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            *ret_why = "number does not fit in 64 bits";
            return -ERANGE;
        }
        value = value * 10 + digit;
    }
    if (*p != '\0' || p == text) {
        *ret_why = "not a plain decimal number";
        return -EINVAL;
    }
    if (text[0] == '0' && text[1] != '\0') {
        *ret_why = "leading zero: write plain decimal (YAML and the kernel read 010 as octal)";
        return -EINVAL;
    }
    *ret = value;
    return 0;
}

/* K, M, G, T with or without "iB": the power of 1024 as a shift, or 0. */
static unsigned unit_shift(const char *suffix)
{
    const char *letter = suffix[0] ? strchr("KMGT", suffix[0]) : NULL;

    if (!letter || (suffix[1] && strcmp(suffix + 1, "iB") != 0))
        return 0;
    return 10 * (unsigned)(letter - "KMGT" + 1);
}

int sizes_parse(const char *text, bool allow_percent, struct size_value *ret,
                const char **ret_why)
{
    char digits[32];
    size_t ndigits = strspn(text, "0123456789");
    const char *suffix = text + ndigits;
    uint64_t number;
    unsigned shift;
    int r;

    if (ndigits == 0) {
        *ret_why = text[0] == '-' ? "size must not be negative"
                                  : "not a size: expected a number of bytes, optionally with a unit "
                                    "(K, M, G, T, KiB, MiB, GiB, TiB)";
        return -EINVAL;
    }
    if (ndigits >= sizeof(digits)) {
        *ret_why = "number does not fit in 64 bits";
        return -ERANGE;
    }
    if (strcmp(suffix, "%") == 0 && !allow_percent) {
        *ret_why = "a percentage of RAM is only allowed for limits.shmmax";
        return -EINVAL;
    }
    if (text[0] == '0' && (suffix[0] == 'x' || suffix[0] == 'X')) {
        *ret_why = "hexadecimal is not allowed: write plain decimal";
        return -EINVAL;
    }
    memcpy(digits, text, ndigits);
    digits[ndigits] = '\0';
    r = sizes_parse_uint(digits, &number, ret_why);
    if (strcmp(suffix, "%") == 0) {
        if (r < 0 || number < 1 || number > 100) {
            *ret_why = "percentage must be a whole number from 1% to 100%";
            return -EINVAL;
        }
        *ret = (struct size_value){ SIZE_PERCENT, number };
        return 0;
    }
    if (r < 0)
        return r;

    if (*suffix == ' ')
        suffix++;
    if (*suffix == '\0') {
        if (suffix != text + ndigits) {
            *ret_why = "trailing space after the number";
            return -EINVAL;
        }
        *ret = (struct size_value){ SIZE_BYTES, number };
        return 0;
    }

    for (size_t i = 0; i < sizeof(decimal_units) / sizeof(decimal_units[0]); i++)
        if (strcmp(suffix, decimal_units[i]) == 0) {
            *ret_why = "ambiguous unit: write KiB/MiB/GiB/TiB or K/M/G/T (shmprov units are powers of 1024)";
            return -EINVAL;
        }

    shift = unit_shift(suffix);
    if (shift == 0) {
        *ret_why = "unknown unit: use K, M, G, T, KiB, MiB, GiB or TiB (powers of 1024)";
        return -EINVAL;
    }
    if (number > (UINT64_MAX >> shift)) {
        *ret_why = "size does not fit in 64 bits";
        return -ERANGE;
    }
    *ret = (struct size_value){ SIZE_BYTES, number << shift };
    return 0;
}

void sizes_format_human(uint64_t bytes, char *buf, size_t len)
{
    static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    unsigned i = 0;
    uint64_t whole = bytes, rem = 0;

    while (whole >= 1024 && i + 1 < sizeof(names) / sizeof(names[0])) {
        rem = whole % 1024;
        whole /= 1024;
        i++;
    }
    if (rem == 0 && (i == 0 || bytes % ((uint64_t)1 << (10 * i)) == 0)) {
        (void)snprintf(buf, len, "%" PRIu64 " %s", whole, names[i]);
        return;
    }
    /* One decimal, truncated: an upper limit should never read larger than it is. */
    (void)snprintf(buf, len, "%" PRIu64 ".%" PRIu64 " %s", whole, rem * 10 / 1024, names[i]);
}

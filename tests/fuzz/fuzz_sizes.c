/* Sizes and percentages as operators write them ("16GiB", "60%"). The
 * parsers take C strings, so the bytes are copied and NUL-terminated. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sizes.h"

static void check_human(uint64_t bytes, size_t len)
{
    char buf[48];

    if (len > sizeof(buf))
        len = sizeof(buf);
    memset(buf, 'x', sizeof(buf));
    sizes_format_human(bytes, buf, len);
    if (len > 0 && memchr(buf, '\0', len) == NULL)
        abort();
    for (size_t i = len; i < sizeof(buf); i++)
        if (buf[i] != 'x')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct size_value v, w;
    const char *why;
    uint64_t n;
    int r, r_pct, r_uint;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    why = NULL;
    r_uint = sizes_parse_uint(text, &n, &why);
    if (r_uint < 0 && (!why || (r_uint != -EINVAL && r_uint != -ERANGE)))
        abort();

    why = NULL;
    r = sizes_parse(text, false, &v, &why);
    if (r < 0 && (!why || (r != -EINVAL && r != -ERANGE)))
        abort();
    if (r == 0 && v.kind != SIZE_BYTES)
        abort();
    /* A plain decimal integer is a size in bytes of the same value. */
    if (r_uint == 0 && (r != 0 || v.value != n))
        abort();

    why = NULL;
    r_pct = sizes_parse(text, true, &w, &why);
    if (r_pct < 0 && (!why || (r_pct != -EINVAL && r_pct != -ERANGE)))
        abort();
    if (r_pct == 0 && w.kind == SIZE_PERCENT && (w.value < 1 || w.value > 100))
        abort();
    /* Allowing percentages changes nothing about anything else. */
    if (r == 0 && (r_pct != 0 || w.kind != v.kind || w.value != v.value))
        abort();

    if (r == 0)
        check_human(v.value, size % 49);
    if (size >= sizeof(n)) {
        memcpy(&n, data, sizeof(n));
        check_human(n, data[0] % 49);
    }
    free(text);
    return 0;
}

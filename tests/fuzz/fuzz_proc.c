/* The /proc parsers: /proc/sysvipc/shm row by row (shmseg), its sum
 * (host_parse_sysvipc_shm), and /proc/meminfo. A kernel we have not seen,
 * or a test's SHMPROV_TEST_PROC_DIR, may hand them anything. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "shmseg.h"
#include "testing.h"

static const uint64_t page_sizes[] = { 4096, 65536, 1, UINT64_MAX };

static void check_table(const struct shmseg_table *t, const uint8_t *data, size_t size)
{
    size_t rows = 0;
    const uint8_t *nl = memchr(data, '\n', size);

    /* One entry per line after the header. */
    for (const uint8_t *p = nl + 1; p < data + size; p++)
        rows += *p == '\n';
    if (t->count != rows)
        abort();
    for (size_t i = 0; i < t->count; i++) {
        const struct shmseg *s = &t->items[i];
        char perms[10];

        if (s->id < 0 || s->mode > 07777 || s->cpid < 0 || s->lpid < 0 || s->atime < 0 ||
            s->dtime < 0 || s->ctime < 0)
            abort();
        shmseg_perms_text(s->mode, perms);
        if (strlen(perms) != 9)
            abort();
    }
    for (size_t i = 0; i < sizeof(page_sizes) / sizeof(page_sizes[0]); i++) {
        struct sizing_usage u;

        if (shmseg_usage(t, page_sizes[i], &u) < 0)
            continue;
        if (u.segments != t->count || u.largest_segment > u.bytes ||
            (u.bytes > 0 && u.pages == 0) || (page_sizes[i] == 1 && u.pages != u.bytes))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shmseg_table *t = NULL;
    struct sizing_usage usage, direct;
    bool direct_ok = false;
    uint64_t bytes;
    char *text;
    int r;

    /* shmseg_parse takes a length: give it exactly the bytes, so reading
     * one past them is caught. */
    r = shmseg_parse((const char *)data, size, &t);
    if (r == 0) {
        if (!t)
            abort();
        check_table(t, data, size);
        direct_ok = shmseg_usage(t, 4096, &direct) == 0;
        free(t);
    } else if (r != -EINVAL && r != -ENOMEM) {
        abort();
    }

    /* The others take C strings. */
    text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    r = host_parse_sysvipc_shm(text, 4096, &usage);
    if (r != 0 && r != -EINVAL && r != -ENOMEM)
        abort();
    /* Without a NUL inside, the string is the same text: the same answer. */
    if (!memchr(data, '\0', size) && r != -ENOMEM) {
        if ((r == 0) != direct_ok)
            abort();
        if (r == 0 && (usage.segments != direct.segments || usage.bytes != direct.bytes ||
                       usage.pages != direct.pages ||
                       usage.largest_segment != direct.largest_segment))
            abort();
    }
    if (host_parse_sysvipc_shm(text, 0, &usage) != -EINVAL)
        abort();

    r = host_parse_meminfo(text, &bytes);
    if (r == 0 && (bytes == 0 || bytes % 1024 != 0))
        abort();
    if (r != 0 && r != -EINVAL)
        abort();
    free(text);
    return 0;
}

#include "shmseg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The columns, fixed since Linux 2.6.x (rss and swap since 4.x may be
 * missing on older kernels):
 *   key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime [rss swap] */
#define HEADER_START "       key      shmid perms"
#define FIELDS_MIN 14
#define FIELDS_MAX 16

struct cursor {
    const char *p, *end;
};

/* The space-separated field at c (spaces before it skipped) as an integer:
 * decimal (base 10) or the octal perms (base 8), with an optional '-' where
 * negative makes sense. No strtoull: it would accept "+", "0x" and leading
 * space, and read past a field that is not NUL-terminated. */
static bool next_field(struct cursor *c, unsigned base, bool allow_negative, uint64_t max_magnitude,
                       bool *ret_negative, uint64_t *ret)
{
    uint64_t value = 0;
    bool negative = false;
    size_t digits = 0;

    if (c->p < c->end && *c->p == '-' && allow_negative) {
        negative = true;
        c->p++;
    }
    while (c->p < c->end && *c->p >= '0' && *c->p < (char)('0' + base)) {
        unsigned d = (unsigned)(*c->p - '0');
        if (value > (max_magnitude - d) / base)
            return false;
        value = value * base + d;
        c->p++;
        digits++;
    }
    if (digits == 0 || (c->p < c->end && *c->p != ' '))
        return false;
    *ret_negative = negative;
    *ret = value;
    return true;
}

/* Each column's largest magnitude, so that every cast in parse_row() is
 * exact: key is a signed int, pids are pid_t (they do not go negative in
 * /proc), perms octal, the rest unsigned. */
static const uint64_t column_max[FIELDS_MAX] = {
    UINT64_C(2147483648), INT32_MAX, 07777, UINT64_MAX,   /* key shmid perms size */
    INT32_MAX, INT32_MAX, UINT64_MAX,                     /* cpid lpid nattch */
    UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX,       /* uid gid cuid cgid */
    INT64_MAX, INT64_MAX, INT64_MAX, UINT64_MAX, UINT64_MAX, /* atime dtime ctime rss swap */
};

static int parse_row(const char *line, const char *eol, struct shmseg *s)
{
    struct cursor c = { line, eol };
    uint64_t v[FIELDS_MAX] = { 0 };
    bool neg[FIELDS_MAX] = { false };
    unsigned n;

    for (n = 0;; n++) {
        while (c.p < c.end && *c.p == ' ')
            c.p++;
        if (c.p == c.end || n == FIELDS_MAX)
            break;
        if (!next_field(&c, n == 2 ? 8 : 10, n == 0, column_max[n], &neg[n], &v[n]))
            return -EINVAL;
        if (n == 0 && !neg[n] && v[n] > INT32_MAX)
            return -EINVAL;
    }
    if (n < FIELDS_MIN || c.p != c.end)
        return -EINVAL;

    s->key = neg[0] ? (uint32_t)(UINT64_C(4294967296) - v[0]) : (uint32_t)v[0];
    s->id = (int32_t)v[1];
    s->mode = (unsigned)v[2];
    s->size = v[3];
    s->cpid = (int64_t)v[4];
    s->lpid = (int64_t)v[5];
    s->nattch = v[6];
    s->uid = (uint32_t)v[7];
    s->gid = (uint32_t)v[8];
    s->cuid = (uint32_t)v[9];
    s->cgid = (uint32_t)v[10];
    s->atime = (int64_t)v[11];
    s->dtime = (int64_t)v[12];
    s->ctime = (int64_t)v[13];
    s->rss = v[14];
    s->swap = v[15];
    return 0;
}

int shmseg_parse(const char *text, size_t len, struct shmseg_table **ret)
{
    const char *end = text + len, *line, *eol;
    struct shmseg_table *t;
    size_t rows = 0, i = 0;

    if (len < sizeof(HEADER_START) - 1 || memcmp(text, HEADER_START, sizeof(HEADER_START) - 1) != 0)
        return -EINVAL;
    line = memchr(text, '\n', len);
    if (!line)
        return -EINVAL;
    line++;
    /* Every row ends with a newline: a last line without one is a file
     * cut short, and a short table would under-count usage. */
    if (line < end && end[-1] != '\n')
        return -EINVAL;
    for (const char *p = line; p < end; p++)
        rows += *p == '\n';

    t = malloc(sizeof(*t) + rows * sizeof(t->items[0]));
    if (!t)
        return -ENOMEM;
    for (; line < end; line = eol + 1, i++) {
        eol = memchr(line, '\n', (size_t)(end - line));
        if (parse_row(line, eol, &t->items[i]) < 0) {
            free(t);
            return -EINVAL;
        }
    }
    t->count = rows;
    *ret = t;
    return 0;
}

int shmseg_usage(const struct shmseg_table *t, uint64_t page_size, struct sizing_usage *ret)
{
    struct sizing_usage u = { 0 };

    if (page_size == 0)
        return -EINVAL;
    for (size_t i = 0; i < t->count; i++) {
        uint64_t size = t->items[i].size;
        uint64_t pages = size / page_size + (size % page_size != 0);

        /* Saturate: an absurd table must make the guards refuse, not turn
         * usage into "unknown" and let them pass. */
        u.segments++;
        u.bytes = u.bytes > UINT64_MAX - size ? UINT64_MAX : u.bytes + size;
        u.pages = u.pages > UINT64_MAX - pages ? UINT64_MAX : u.pages + pages;
        if (size > u.largest_segment)
            u.largest_segment = size;
    }
    *ret = u;
    return 0;
}

void shmseg_perms_text(unsigned mode, char buf[10])
{
    static const char letters[] = "rwxrwxrwx";

    for (int i = 0; i < 9; i++)
        buf[i] = (char)((mode & (0400u >> i)) ? letters[i] : '-');
    buf[9] = '\0';
}

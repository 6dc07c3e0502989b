#include "udiff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GNU diff -u's default. Operators read plan output the way they read that
 * tool's, so every convention below follows it. */
#define CONTEXT 3

struct line {
    const char *text;
    size_t len;    /* including the '\n'; only a file's last line may lack it */
    uint64_t hash; /* compared before the bytes: most unequal lines differ here */
};

struct file {
    struct line *lines;
    bool *changed; /* the edit script: line deleted (old) or inserted (new) */
    int n;
    int *kept;     /* indexes of the lines the search looks at */
    int nkept;
};

/* Work space of the search, shared by every level of the recursion. Both
 * arrays are addressed by diagonal k = x - y (forward) or by its distance
 * from the end diagonal (reverse), from -(n + m + 1) to n + m + 1. */
struct search {
    struct file *a, *b;
    int *fwd;
    int *rev;
};

/* A run of deleted lines a[a, a + del) replaced by b[b, b + ins). */
struct change {
    int a, b;
    int del, ins;
};

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Counts lines, stopping one past the cap so a huge buffer costs no more
 * than a legal one. */
static size_t count_lines(const char *text, size_t len)
{
    size_t n = 0, pos = 0;

    while (pos < len && n <= UDIFF_MAX_LINES) {
        const char *nl = memchr(text + pos, '\n', len - pos);

        n++;
        if (!nl)
            break;
        pos = (size_t)(nl - text) + 1;
    }
    return n;
}

/* FNV-1a: cheap, and a hash collision only costs a memcmp. */
static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static void split_lines(const char *text, size_t len, struct line *lines)
{
    size_t pos = 0;

    for (int i = 0; pos < len; i++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;

        lines[i].text = text + pos;
        lines[i].len = end - pos;
        lines[i].hash = hash_bytes(lines[i].text, lines[i].len);
        pos = end;
    }
}

/* The newline is part of the line, so "x" at the end of a file differs from
 * "x\n", as in GNU diff: the diff must show the newline being added or
 * removed. */
static bool same_line(const struct line *x, const struct line *y)
{
    return x->hash == y->hash && x->len == y->len && memcmp(x->text, y->text, x->len) == 0;
}

/* Marks kept lines lo..hi-1 changed. */
static void mark(struct file *f, int lo, int hi)
{
    for (int i = lo; i < hi; i++)
        f->changed[f->kept[i]] = true;
}

/* Whether kept line x of the old file equals kept line y of the new one. */
static bool same_kept(const struct search *s, int x, int y)
{
    return same_line(&s->a->lines[s->a->kept[x]], &s->b->lines[s->b->kept[y]]);
}

static bool in_box(int x, int y, int n, int m)
{
    return x >= 0 && x <= n && y >= 0 && y <= m;
}

/* Myers' middle snake ("An O(ND) Difference Algorithm and Its Variations",
 * 1986, section 4b) for kept lines a[xlo, xhi) against b[ylo, yhi), both
 * non-empty with different first and last lines. Paths run forward from the
 * top-left and backward from the bottom-right, one more edit per round,
 * until a forward path reaches past a backward one on the same diagonal:
 * that point lies on a shortest edit script, so it splits the problem into
 * two halves with about half the edits each. Paths may step outside the box
 * (lines there never match); such points are never taken as the split, nor
 * is a corner, so each half is smaller than the whole. Sets *ret_x and
 * *ret_y to the split, relative to xlo and ylo, and returns true; returns
 * false only if no split was found, which would be a bug. */
static bool middle_snake(const struct search *s, int xlo, int xhi, int ylo, int yhi,
                         int *ret_x, int *ret_y)
{
    const int n = xhi - xlo, m = yhi - ylo, delta = n - m;
    const bool odd = delta % 2 != 0;
    int *fwd = s->fwd, *rev = s->rev;

    /* Seeds, so round 0 starts at (0, 0) and at (n, m) like any other. */
    fwd[1] = 0;
    rev[1] = n + 1;

    /* Diagonals run from high to low within a round, as in GNU diff: where
     * several shortest scripts exist, the one found first is kept, and this
     * order picks the one GNU diff prints more often. */
    for (int d = 0; d <= n + m; d++) {
        for (int k = d; k >= -d; k -= 2) {
            int x, y;

            /* Extend whichever of the neighbouring (d-1)-paths reaches
             * further: by an insertion from k + 1, a deletion from k - 1. */
            if (k == -d || (k != d && fwd[k - 1] < fwd[k + 1]))
                x = fwd[k + 1];
            else
                x = fwd[k - 1] + 1;
            y = x - k;
            while (x < n && y < m && same_kept(s, xlo + x, ylo + y)) {
                x++;
                y++;
            }
            fwd[k] = x;

            /* With an odd delta the paths first meet on a forward round;
             * the reverse paths of round d - 1 cover diagonals within
             * d - 1 of delta. */
            if (odd && k >= delta - (d - 1) && k <= delta + (d - 1) && x >= rev[k - delta] &&
                in_box(x, y, n, m) && in_box(rev[k - delta], rev[k - delta] - k, n, m) &&
                x + y > 0 && x + y < n + m) {
                *ret_x = x;
                *ret_y = y;
                return true;
            }
        }

        for (int j = d; j >= -d; j -= 2) {
            const int k = j + delta;
            int x, y;

            /* Mirror image: the smaller x reaches further back, by a
             * deletion from k + 1 or an insertion from k - 1. */
            if (j == -d || (j != d && rev[j + 1] - 1 < rev[j - 1]))
                x = rev[j + 1] - 1;
            else
                x = rev[j - 1];
            y = x - k;
            while (x > 0 && y > 0 && same_kept(s, xlo + x - 1, ylo + y - 1)) {
                x--;
                y--;
            }
            rev[j] = x;

            if (!odd && k >= -d && k <= d && fwd[k] >= x && in_box(x, y, n, m) &&
                in_box(fwd[k], fwd[k] - k, n, m) && x + y > 0 && x + y < n + m) {
                *ret_x = x;
                *ret_y = y;
                return true;
            }
        }
    }
    return false;
}

/* Marks a shortest edit script for kept lines a[xlo, xhi) -> b[ylo, yhi).
 * Recursion depth is logarithmic in the number of edits, since each middle
 * snake halves it. */
static void compare(struct search *s, int xlo, int xhi, int ylo, int yhi)
{
    int x, y;

    /* Equal lines at both ends belong to every shortest script. Taking them
     * first also keeps the earliest of equal candidates, as GNU diff does. */
    while (xlo < xhi && ylo < yhi && same_kept(s, xlo, ylo)) {
        xlo++;
        ylo++;
    }
    while (xlo < xhi && ylo < yhi && same_kept(s, xhi - 1, yhi - 1)) {
        xhi--;
        yhi--;
    }

    if (xlo == xhi || ylo == yhi) {
        mark(s->a, xlo, xhi);
        mark(s->b, ylo, yhi);
        return;
    }
    if (!middle_snake(s, xlo, xhi, ylo, yhi, &x, &y)) {
        /* Unreachable; replacing the whole range is still a correct diff. */
        mark(s->a, xlo, xhi);
        mark(s->b, ylo, yhi);
        return;
    }
    compare(s, xlo, xlo + x, ylo, ylo + y);
    compare(s, xlo + x, xhi, ylo + y, yhi);
}

static int cmp_hash(const void *x, const void *y)
{
    uint64_t hx = *(const uint64_t *)x, hy = *(const uint64_t *)y;

    return (hx > hy) - (hx < hy);
}

/* Keeps for the search those of f's lines that may occur in other; the rest
 * occur nowhere there, so they are changed in every script and are marked
 * now. Dropping them makes the search cheaper and, among equally short
 * scripts, leads to the one GNU diff prints, since it drops them too. A hash
 * match keeps a line, so a collision costs only time. hashes has room for
 * other's lines. */
static void keep_shared(struct file *f, const struct file *other, uint64_t *hashes)
{
    for (int i = 0; i < other->n; i++)
        hashes[i] = other->lines[i].hash;
    qsort(hashes, (size_t)other->n, sizeof(*hashes), cmp_hash);

    f->nkept = 0;
    for (int i = 0; i < f->n; i++) {
        if (bsearch(&f->lines[i].hash, hashes, (size_t)other->n, sizeof(*hashes), cmp_hash))
            f->kept[f->nkept++] = i;
        else
            f->changed[i] = true;
    }
}

/* partner[r] is the index in f of its r-th unchanged line; partner[count of
 * unchanged lines] is f->n. Unchanged lines of the two files pair up in
 * order, so this maps a position in one file to the other. */
static void fill_partners(const struct file *f, int *partner)
{
    int r = 0;

    for (int i = 0; i < f->n; i++)
        if (!f->changed[i])
            partner[r++] = i;
    partner[r] = f->n;
}

/* A run of changed lines can often slide: deleting the 2nd of "a b a" is the
 * same edit as deleting the 1st... Like GNU diff, merge runs that can be
 * merged, slide each run as far down as it goes, then back up to the last
 * place where it ends together with a run in the other file, so a deletion
 * and its replacement print as one block. partner maps unchanged lines of f
 * to those of other (see fill_partners). */
static void shift_runs(struct file *f, const struct file *other, const int *partner)
{
    bool *chg = f->changed;
    int i = 0, r = 0; /* r: unchanged lines before i (and before a run's start) */

    for (;;) {
        int start, end, len, aligned;

        while (i < f->n && !chg[i]) {
            i++;
            r++;
        }
        if (i == f->n)
            break;
        start = end = i;
        while (end < f->n && chg[end])
            end++;

        do {
            len = end - start;

            while (start > 0 && same_line(&f->lines[start - 1], &f->lines[end - 1])) {
                chg[--start] = true;
                chg[--end] = false;
                r--;
                while (start > 0 && chg[start - 1])
                    start--;
            }

            /* The unchanged line after the run is the r-th; the run lines
             * up with the other file when a change there precedes its
             * partner. */
            aligned = partner[r] > 0 && other->changed[partner[r] - 1] ? end : -1;

            while (end < f->n && same_line(&f->lines[start], &f->lines[end])) {
                chg[start++] = false;
                chg[end++] = true;
                r++;
                while (end < f->n && chg[end])
                    end++;
                if (partner[r] > 0 && other->changed[partner[r] - 1])
                    aligned = end;
            }
        } while (len != end - start);

        /* The last pass merged nothing, so every position it passed through
         * is a valid place for the run. */
        while (aligned >= 0 && end > aligned) {
            chg[--start] = true;
            chg[--end] = false;
            r--;
        }
        i = end;
    }
}

/* Lists the changes; unchanged lines pair up in order between them. */
static int collect_changes(const struct file *a, const struct file *b, struct change *changes)
{
    int count = 0, i = 0, j = 0;

    for (;;) {
        struct change *c = &changes[count];

        while (i < a->n && j < b->n && !a->changed[i] && !b->changed[j]) {
            i++;
            j++;
        }
        if (i == a->n && j == b->n)
            break;
        c->a = i;
        c->b = j;
        while (i < a->n && a->changed[i])
            i++;
        while (j < b->n && b->changed[j])
            j++;
        c->del = i - c->a;
        c->ins = j - c->b;
        count++;
    }
    return count;
}

static int buf_append(struct buf *b, const char *data, size_t len)
{
    /* Room for the data and the NUL that always follows it. */
    if (len > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;

        while (cap < b->len + len + 1)
            cap = cap > SIZE_MAX / 2 ? b->len + len + 1 : cap * 2;
        p = realloc(b->data, cap);
        if (!p)
            return -ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

static int append_line(struct buf *b, char prefix, const struct line *l)
{
    int r;

    r = buf_append(b, &prefix, 1);
    if (r < 0)
        return r;
    r = buf_append(b, l->text, l->len);
    if (r < 0)
        return r;
    /* The marker tells patch not to add a newline the file does not have. */
    if (l->text[l->len - 1] != '\n')
        r = buf_append_str(b, "\n\\ No newline at end of file\n");
    return r;
}

/* GNU diff names a range by its first line and length, the length left out
 * when it is 1. An empty range is named by the line before it: patch needs
 * "-0,0" to recognise a diff against an empty file. start is 0-based. */
static void format_range(char *out, size_t size, int start, int count)
{
    /* Callers pass 32 bytes: two ints and a comma take 24 at most. */
    if (count == 0)
        (void)snprintf(out, size, "%d,0", start);
    else if (count == 1)
        (void)snprintf(out, size, "%d", start + 1);
    else
        (void)snprintf(out, size, "%d,%d", start + 1, count);
}

/* Prints changes[0, count) as one hunk with its context. */
static int append_hunk(struct buf *out, const struct file *a, const struct file *b,
                       const struct change *changes, int count)
{
    const struct change *first = &changes[0], *last = &changes[count - 1];
    int lead = first->a < CONTEXT ? first->a : CONTEXT;
    int a_end = last->a + last->del, b_end = last->b + last->ins;
    int trail = a->n - a_end < CONTEXT ? a->n - a_end : CONTEXT;
    int i = first->a - lead, j = first->b - lead;
    char range_a[32], range_b[32], header[80];
    int r;

    format_range(range_a, sizeof(range_a), i, a_end + trail - i);
    format_range(range_b, sizeof(range_b), j, b_end + trail - j);
    (void)snprintf(header, sizeof(header), "@@ -%s +%s @@\n", range_a, range_b); /* 10 + 2 x 31 < 80 */
    r = buf_append_str(out, header);
    if (r < 0)
        return r;

    for (int c = 0; c < count; c++) {
        const struct change *ch = &changes[c];

        /* Unchanged lines are the same bytes on both sides. */
        for (; i < ch->a; i++, j++) {
            r = append_line(out, ' ', &a->lines[i]);
            if (r < 0)
                return r;
        }
        for (; i < ch->a + ch->del; i++) {
            r = append_line(out, '-', &a->lines[i]);
            if (r < 0)
                return r;
        }
        for (; j < ch->b + ch->ins; j++) {
            r = append_line(out, '+', &b->lines[j]);
            if (r < 0)
                return r;
        }
    }
    for (; i < a_end + trail; i++) {
        r = append_line(out, ' ', &a->lines[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Prints the header and every hunk of a non-empty list of changes. */
static int append_diff(struct buf *out, const struct file *a, const struct file *b,
                       const char *old_label, const char *new_label,
                       const struct change *changes, int count)
{
    const char *header[] = {"--- ", old_label, "\n+++ ", new_label, "\n"};
    int r;

    for (size_t i = 0; i < sizeof(header) / sizeof(header[0]); i++) {
        r = buf_append_str(out, header[i]);
        if (r < 0)
            return r;
    }

    /* A hunk ends where the next change is at least 2 * CONTEXT + 1
     * unchanged lines away: closer, their contexts would touch or overlap,
     * and GNU diff prints them as one hunk. */
    for (int first = 0, c = 1; c <= count; c++) {
        if (c < count &&
            changes[c].a - (changes[c - 1].a + changes[c - 1].del) < 2 * CONTEXT + 1)
            continue;
        r = append_hunk(out, a, b, &changes[first], c - first);
        if (r < 0)
            return r;
        first = c;
    }
    return 0;
}

static bool has_newline(const char *s)
{
    return s && strchr(s, '\n');
}

/* calloc(0) may return NULL, which would read as a failure. */
static void *alloc_zeroed(size_t count, size_t size)
{
    return calloc(count ? count : 1, size);
}

int udiff_render(const char *old_text, size_t old_len,
                 const char *new_text, size_t new_len,
                 const char *old_label, const char *new_label,
                 char **ret_text)
{
    struct file a = {0}, b = {0};
    struct search s = {.a = &a, .b = &b};
    struct change *changes = NULL;
    int *fwd = NULL, *rev = NULL, *partner = NULL;
    uint64_t *hashes = NULL;
    struct buf out = {0};
    size_t old_lines, new_lines, most, span;
    int nchanges, r;

    if (!new_text || !new_label || !ret_text || (old_text && !old_label) ||
        (!old_text && old_len > 0))
        return -EINVAL;
    if (!old_text)
        old_label = "/dev/null";
    if (has_newline(old_label) || has_newline(new_label))
        return -EINVAL;

    old_lines = old_text ? count_lines(old_text, old_len) : 0;
    new_lines = count_lines(new_text, new_len);
    if (old_lines > UDIFF_MAX_LINES || new_lines > UDIFF_MAX_LINES)
        return -E2BIG;
    a.n = (int)old_lines;
    b.n = (int)new_lines;
    most = old_lines > new_lines ? old_lines : new_lines;

    /* Diagonals -(n + m + 1) .. n + m + 1; see struct search. */
    span = 2 * (old_lines + new_lines) + 3;
    a.lines = alloc_zeroed(old_lines, sizeof(*a.lines));
    b.lines = alloc_zeroed(new_lines, sizeof(*b.lines));
    a.changed = alloc_zeroed(old_lines, sizeof(*a.changed));
    b.changed = alloc_zeroed(new_lines, sizeof(*b.changed));
    a.kept = alloc_zeroed(old_lines, sizeof(*a.kept));
    b.kept = alloc_zeroed(new_lines, sizeof(*b.kept));
    hashes = alloc_zeroed(most, sizeof(*hashes));
    fwd = alloc_zeroed(span, sizeof(*fwd));
    rev = alloc_zeroed(span, sizeof(*rev));
    partner = alloc_zeroed(most + 1, sizeof(*partner));
    changes = alloc_zeroed(old_lines + new_lines, sizeof(*changes));
    if (!a.lines || !b.lines || !a.changed || !b.changed || !a.kept || !b.kept || !hashes ||
        !fwd || !rev || !partner || !changes) {
        r = -ENOMEM;
        goto out;
    }
    if (old_text)
        split_lines(old_text, old_len, a.lines);
    split_lines(new_text, new_len, b.lines);

    keep_shared(&a, &b, hashes);
    keep_shared(&b, &a, hashes);
    s.fwd = fwd + old_lines + new_lines + 1;
    s.rev = rev + old_lines + new_lines + 1;
    compare(&s, 0, a.nkept, 0, b.nkept);

    /* Old first, then new against the result, as GNU diff does. */
    fill_partners(&b, partner);
    shift_runs(&a, &b, partner);
    fill_partners(&a, partner);
    shift_runs(&b, &a, partner);

    /* Always hand back a string, "" when nothing changed. */
    r = buf_append(&out, "", 0);
    if (r < 0)
        goto out;
    nchanges = collect_changes(&a, &b, changes);
    if (nchanges > 0) {
        r = append_diff(&out, &a, &b, old_label, new_label, changes, nchanges);
        if (r < 0)
            goto out;
    }

    *ret_text = out.data;
    out.data = NULL;
    r = 0;
out:
    free(out.data);
    free(changes);
    free(partner);
    free(rev);
    free(fwd);
    free(hashes);
    free(b.kept);
    free(a.kept);
    free(b.changed);
    free(a.changed);
    free(b.lines);
    free(a.lines);
    return r;
}

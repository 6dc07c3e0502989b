#include "udiff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GNU diff -u's default: operators read plan output the way they read that
 * tool's. Hunks closer than 2 * CONTEXT unchanged lines are merged. */
#define CONTEXT 3

struct line {
    const char *text;
    size_t len; /* including the '\n'; only a file's last line may lack it */
};

/* One line of the edit script: ' ' kept, '-' deleted, '+' inserted; a and
 * b are the 0-based positions in old and new where it stands. */
struct op {
    char kind;
    size_t a, b;
    const struct line *line; /* the line shown */
};

/* Splits text into lines; -E2BIG past UDIFF_MAX_LINES. The cap makes the
 * table small enough (64 KiB) to allocate whole. */
static int split(const char *text, size_t len, struct line **ret, size_t *ret_n)
{
    struct line *lines = malloc(UDIFF_MAX_LINES * sizeof(*lines));
    size_t n = 0;

    if (!lines)
        return -ENOMEM;
    for (size_t pos = 0; pos < len; n++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;

        if (n == UDIFF_MAX_LINES) {
            free(lines);
            return -E2BIG;
        }
        lines[n] = (struct line){ text + pos, end - pos };
        pos = end;
    }
    *ret = lines;
    *ret_n = n;
    return 0;
}

static bool same(const struct line *x, const struct line *y)
{
    return x->len == y->len && memcmp(x->text, y->text, x->len) == 0;
}

/* The edit script of old -> new: a longest common subsequence of the lines
 * between the common head and tail, deletions before insertions where both
 * fit, which is what diff -u shows for files this small. */
static int edit_script(const struct line *old, size_t n, const struct line *new, size_t m, struct op *ops,
                       size_t *ret_nops)
{
    size_t head = 0, tail = 0, rows, cols, k = 0, i, j;
    uint16_t *lcs; /* AT(i, j): the LCS length of old[head + i..] and new[head + j..] */

    while (head < n && head < m && same(&old[head], &new[head]))
        head++;
    while (tail < n - head && tail < m - head && same(&old[n - 1 - tail], &new[m - 1 - tail]))
        tail++;
    rows = n - head - tail;
    cols = m - head - tail;
    if ((rows + 1) * (cols + 1) > UDIFF_MAX_CELLS)
        return -E2BIG;
    lcs = calloc((rows + 1) * (cols + 1), sizeof(*lcs));
    if (!lcs)
        return -ENOMEM;
#define AT(i, j) lcs[(i) * (cols + 1) + (j)]
    for (i = rows; i-- > 0;)
        for (j = cols; j-- > 0;)
            AT(i, j) = same(&old[head + i], &new[head + j]) ? (uint16_t)(AT(i + 1, j + 1) + 1)
                       : AT(i + 1, j) >= AT(i, j + 1)       ? AT(i + 1, j)
                                                            : AT(i, j + 1);
    for (i = 0; i < head; i++)
        ops[k++] = (struct op){ ' ', i, i, &old[i] };
    for (i = 0, j = 0; i < rows || j < cols;) {
        if (i < rows && j < cols && same(&old[head + i], &new[head + j])) {
            ops[k++] = (struct op){ ' ', head + i, head + j, &old[head + i] };
            i++, j++;
        } else if (i < rows && (j == cols || AT(i + 1, j) >= AT(i, j + 1))) {
            ops[k++] = (struct op){ '-', head + i, head + j, &old[head + i] };
            i++;
        } else {
            ops[k++] = (struct op){ '+', head + i, head + j, &new[head + j] };
            j++;
        }
    }
#undef AT
    for (i = 0; i < tail; i++)
        ops[k++] = (struct op){ ' ', n - tail + i, m - tail + i, &old[n - tail + i] };
    free(lcs);
    *ret_nops = k;
    return 0;
}

static void put_line(FILE *out, char kind, const struct line *l)
{
    fputc(kind, out);
    (void)fwrite(l->text, 1, l->len, out); /* errors are sticky: fclose() reports them */
    if (l->len == 0 || l->text[l->len - 1] != '\n')
        fputs("\n\\ No newline at end of file\n", out);
}

/* "-a,b": a 1-based start, ",b" left out when b is 1; an empty range
 * names the line before it. */
static void put_range(FILE *out, char sign, size_t start, size_t count)
{
    if (count == 1)
        fprintf(out, "%c%zu", sign, start + 1);
    else
        fprintf(out, "%c%zu,%zu", sign, count ? start + 1 : start, count);
}

static void put_hunk(FILE *out, const struct op *ops, size_t from, size_t to)
{
    size_t dels = 0, ins = 0;

    for (size_t k = from; k < to; k++) {
        dels += ops[k].kind != '+';
        ins += ops[k].kind != '-';
    }
    fputs("@@ ", out);
    put_range(out, '-', ops[from].a, dels);
    fputc(' ', out);
    put_range(out, '+', ops[from].b, ins);
    fputs(" @@\n", out);
    for (size_t k = from; k < to; k++)
        put_line(out, ops[k].kind, ops[k].line);
}

/* Every hunk: changes with their context, merged when close; after the
 * labels when there is one. */
static void put_hunks(FILE *out, const struct op *ops, size_t nops, const char *old_label, const char *new_label)
{
    for (size_t k = 0; k < nops;) {
        size_t first, last;

        while (k < nops && ops[k].kind == ' ')
            k++;
        if (k == nops)
            return;
        if (old_label) {
            fprintf(out, "--- %s\n+++ %s\n", old_label, new_label);
            old_label = NULL;
        }
        first = last = k;
        for (k++; k < nops && k - last <= 2 * CONTEXT + 1; k++)
            if (ops[k].kind != ' ')
                last = k;
        k = last + 1 + CONTEXT < nops ? last + 1 + CONTEXT : nops;
        put_hunk(out, ops, first > CONTEXT ? first - CONTEXT : 0, k);
    }
}

int udiff_render(const char *old_text, size_t old_len, const char *new_text, size_t new_len,
                 const char *old_label, const char *new_label, char **ret_text)
{
    struct line *old = NULL, *new = NULL;
    struct op *ops = NULL;
    size_t n = 0, m = 0, nops = 0, size = 0;
    char *text = NULL;
    FILE *out = NULL;
    int r;

    if (!new_text || !new_label || !ret_text || (old_text && !old_label) || (!old_text && old_len > 0) ||
        strchr(new_label, '\n') || (old_text && strchr(old_label, '\n')))
        return -EINVAL;
    r = split(old_text, old_text ? old_len : 0, &old, &n);
    if (r == 0)
        r = split(new_text, new_len, &new, &m);
    if (r == 0 && !(ops = malloc((n + m + 1) * sizeof(*ops))))
        r = -ENOMEM;
    if (r == 0)
        r = edit_script(old, n, new, m, ops, &nops);
    if (r == 0 && !(out = open_memstream(&text, &size)))
        r = -ENOMEM;
    if (r == 0) {
        put_hunks(out, ops, nops, old_text ? old_label : "/dev/null", new_label);
        if (fclose(out) != 0)
            r = -ENOMEM;
    }
    free(ops);
    free(old);
    free(new);
    if (r < 0) {
        free(text);
        return r;
    }
    *ret_text = text;
    return 0;
}

/* Unit tests for agent/udiff.c.
 *
 * Every expected string below is the output of GNU diffutils 3.8,
 *   diff -u --label a/old --label b/new OLD NEW
 * with /dev/null as OLD where the old file is absent (and -a for the case
 * with a NUL byte), pasted verbatim: plan output must read exactly like the
 * tool operators already know. The tests never run diff themselves. */

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "udiff.h"

struct render_case {
    const char *name;
    const char *old; /* NULL: the file is absent */
    const char *new;
    const char *expected;
};

/* The texts most cases diff: a drop-in, its first two lines, and numbered
 * lines; HEAD is the header every diff of a/old and b/new starts with. */
#define HEADER2 "# Managed by shmprov.\nkernel.shmmax = 4294967296\n"
#define DROPIN HEADER2 "kernel.shmall = 1048576\n"
#define FIVE "1\n2\n3\n4\n5\n"
#define NINE FIVE "6\n7\n8\n9\n"
#define TWENTY NINE "10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n"
#define HEAD "--- a/old\n+++ b/new\n"

static const struct render_case render_cases[] = {
    { "identical", DROPIN, DROPIN, "" },
    { "absent_vs_empty", NULL, "", "" },
    { "new_file", NULL, DROPIN,
      "--- /dev/null\n+++ b/new\n@@ -0,0 +1,3 @@\n+# Managed by shmprov.\n+kernel.shmmax = 4294967296\n"
      "+kernel.shmall = 1048576\n" },
    { "empty_old", "", DROPIN,
      HEAD "@@ -0,0 +1,3 @@\n+# Managed by shmprov.\n+kernel.shmmax = 4294967296\n"
      "+kernel.shmall = 1048576\n" },
    { "delete_all", DROPIN, "",
      HEAD "@@ -1,3 +0,0 @@\n-# Managed by shmprov.\n-kernel.shmmax = 4294967296\n"
      "-kernel.shmall = 1048576\n" },
    { "one_line_changed", "a\n", "b\n",
      HEAD "@@ -1 +1 @@\n-a\n+b\n" },
    { "middle_change", NINE, "1\n2\n3\n4\n5 changed\n6\n7\n8\n9\n",
      HEAD "@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+5 changed\n 6\n 7\n 8\n" },
    { "first_line_changed", NINE, "1 changed\n2\n3\n4\n5\n6\n7\n8\n9\n",
      HEAD "@@ -1,4 +1,4 @@\n-1\n+1 changed\n 2\n 3\n 4\n" },
    { "insert_at_start", FIVE, "new\n1\n2\n3\n4\n5\n",
      HEAD "@@ -1,3 +1,4 @@\n+new\n 1\n 2\n 3\n" },
    { "append_at_end", FIVE, "1\n2\n3\n4\n5\nnew\n",
      HEAD "@@ -3,3 +3,4 @@\n 3\n 4\n 5\n+new\n" },
    { "far_apart_two_hunks", TWENTY,
      "1\n2 changed\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17 changed\n18\n19\n20\n",
      HEAD "@@ -1,5 +1,5 @@\n 1\n-2\n+2 changed\n 3\n 4\n 5\n"
      "@@ -14,7 +14,7 @@\n 14\n 15\n 16\n-17\n+17 changed\n 18\n 19\n 20\n" },
    { "six_apart_one_hunk", TWENTY,
      "1\n2\n3 changed\n4\n5\n6\n7\n8\n9\n10 changed\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n",
      HEAD "@@ -1,13 +1,13 @@\n 1\n 2\n-3\n+3 changed\n 4\n 5\n 6\n 7\n 8\n 9\n-10\n+10 changed\n"
      " 11\n 12\n 13\n" },
    { "seven_apart_two_hunks", TWENTY,
      "1\n2\n3 changed\n4\n5\n6\n7\n8\n9\n10\n11 changed\n12\n13\n14\n15\n16\n17\n18\n19\n20\n",
      HEAD "@@ -1,6 +1,6 @@\n 1\n 2\n-3\n+3 changed\n 4\n 5\n 6\n"
      "@@ -8,7 +8,7 @@\n 8\n 9\n 10\n-11\n+11 changed\n 12\n 13\n 14\n" },
    { "old_missing_newline", HEADER2 "kernel.shmall = 1048576", DROPIN,
      HEAD "@@ -1,3 +1,3 @@\n # Managed by shmprov.\n kernel.shmmax = 4294967296\n"
      "-kernel.shmall = 1048576\n\\ No newline at end of file\n+kernel.shmall = 1048576\n" },
    { "new_missing_newline", DROPIN, HEADER2 "kernel.shmall = 1048576",
      HEAD "@@ -1,3 +1,3 @@\n # Managed by shmprov.\n kernel.shmmax = 4294967296\n"
      "-kernel.shmall = 1048576\n+kernel.shmall = 1048576\n\\ No newline at end of file\n" },
    { "both_missing_newline", HEADER2 "kernel.shmall = 1", HEADER2 "kernel.shmall = 1048576",
      HEAD "@@ -1,3 +1,3 @@\n # Managed by shmprov.\n kernel.shmmax = 4294967296\n"
      "-kernel.shmall = 1\n\\ No newline at end of file\n+kernel.shmall = 1048576\n"
      "\\ No newline at end of file\n" },
    { "missing_newline_in_context", "a\nb\nc", "a\nB\nc",
      HEAD "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n\\ No newline at end of file\n" },
    { "empty_lines", "\na\n\n", "\n\na\n",
      HEAD "@@ -1,3 +1,3 @@\n \n-a\n \n+a\n" },
    { "replace_block", "1\n2\n3\n4\n5\n6\n7\n8\n", "1\n2\n3\nx\ny\n7\n8\n",
      HEAD "@@ -1,8 +1,7 @@\n 1\n 2\n 3\n-4\n-5\n-6\n+x\n+y\n 7\n 8\n" },
};

ParameterizedTestParameters(udiff, matches_gnu_diff)
{
    INDEXES(render_cases);
}

ParameterizedTest(size_t *i, udiff, matches_gnu_diff)
{
    const struct render_case *c = &render_cases[*i];
    char *text = NULL;
    int r;

    /* The old label must be ignored when the old file is absent. */
    r = udiff_render(c->old, c->old ? strlen(c->old) : 0, c->new, strlen(c->new), "a/old", "b/new", &text);
    cr_assert_eq(r, 0, "%s: udiff_render returned %d", c->name, r);
    cr_assert_not_null(text, "%s", c->name);
    cr_expect_str_eq(text, c->expected, "%s: got\n%s", c->name, text);
    free(text);
}

/* Texts are byte buffers: a NUL is an ordinary byte (expected output from
 * diff -a) and nothing past old_len/new_len is read. */
Test(udiff, treats_texts_as_bytes)
{
    static const char old_text[] = "a\0x\nb\n";
    static const char new_text[] = "a\0y\nb\n";
    static const char expected[] = HEAD "@@ -1,2 +1,2 @@\n-a\0x\n+a\0y\n b\n";
    char *text = NULL;

    cr_assert_eq(udiff_render(old_text, sizeof(old_text) - 1, new_text, sizeof(new_text) - 1,
                              "a/old", "b/new", &text), 0);
    cr_expect_eq(memcmp(text, expected, sizeof(expected)), 0, "got\n%s", text);
    free(text);

    cr_assert_eq(udiff_render("a\nb\nIGNORED", 4, "a\ncIGNORED", 3, "a/old", "b/new", &text), 0);
    cr_expect_str_eq(text, HEAD "@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n");
    free(text);
}

Test(udiff, old_label_may_be_null_when_old_is_absent)
{
    char *text = NULL;

    cr_assert_eq(udiff_render(NULL, 0, "x\n", 2, NULL, "b/new", &text), 0);
    cr_expect_str_eq(text, "--- /dev/null\n+++ b/new\n@@ -0,0 +1 @@\n+x\n");
    free(text);
}

/* count lines "1\n".."count\n", the changed_at-th (1-based, 0 for none,
 * -1 for every one) replaced by "changed N\n"; an extra line without a
 * newline when tail. */
static char *make_lines(int count, int changed_at, const char *tail, size_t *ret_len)
{
    size_t cap = (size_t)count * 16 + 32, len = 0;
    char *buf = malloc(cap);

    cr_assert_not_null(buf);
    for (int i = 1; i <= count; i++) {
        int n = snprintf(buf + len, cap - len, "%s%d\n", i == changed_at || changed_at < 0 ? "changed " : "", i);
        cr_assert(n > 0 && (size_t)n < cap - len);
        len += (size_t)n;
    }
    if (tail) {
        cr_assert(strlen(tail) < cap - len);
        memcpy(buf + len, tail, strlen(tail) + 1);
        len += strlen(tail);
    }
    *ret_len = len;
    return buf;
}

Test(udiff, renders_files_of_the_maximum_size)
{
    size_t old_len, new_len;
    char *old_text = make_lines(UDIFF_MAX_LINES, 0, NULL, &old_len);
    char *new_text = make_lines(UDIFF_MAX_LINES, 2048, NULL, &new_len);
    char *text = NULL;

    cr_assert_eq(udiff_render(old_text, old_len, new_text, new_len, "a/old", "b/new", &text), 0);
    cr_expect_str_eq(text,
                     HEAD "@@ -2045,7 +2045,7 @@\n 2045\n 2046\n 2047\n-2048\n+changed 2048\n 2049\n 2050\n 2051\n");
    free(text);
    free(new_text);
    free(old_text);
}

Test(udiff, refuses_too_many_lines)
{
    size_t ok_len, big_len, tail_len;
    char *ok = make_lines(UDIFF_MAX_LINES, 0, NULL, &ok_len);
    char *big = make_lines(UDIFF_MAX_LINES + 1, 0, NULL, &big_len);
    /* The last line counts even without its newline. */
    char *tail = make_lines(UDIFF_MAX_LINES, 0, "x", &tail_len);
    char sentinel = 0;
    char *text = &sentinel;

    cr_expect_eq(udiff_render(big, big_len, ok, ok_len, "a", "b", &text), -E2BIG);
    cr_expect_eq(udiff_render(ok, ok_len, big, big_len, "a", "b", &text), -E2BIG);
    cr_expect_eq(udiff_render(NULL, 0, tail, tail_len, "a", "b", &text), -E2BIG);
    cr_expect_eq(udiff_render(tail, tail_len, ok, ok_len, "a", "b", &text), -E2BIG);
    cr_expect_eq(text, &sentinel, "ret_text was written on failure");
    free(tail);
    free(big);
    free(ok);
}

Test(udiff, refuses_a_change_too_large_to_compare)
{
    size_t old_len, new_len;
    /* 1100 lines that all differ: a 1101 x 1101 table, over the cap. */
    char *old_text = make_lines(1100, 0, NULL, &old_len);
    char *new_text = make_lines(1100, -1, NULL, &new_len);
    char sentinel = 0;
    char *text = &sentinel;

    cr_expect_eq(udiff_render(old_text, old_len, new_text, new_len, "a", "b", &text), -E2BIG);
    cr_expect_eq(text, &sentinel, "ret_text was written on failure");
    free(new_text);
    /* One changed line among as many: only it is compared, after the common
     * head and tail. */
    new_text = make_lines(1100, 550, NULL, &new_len);
    cr_assert_eq(udiff_render(old_text, old_len, new_text, new_len, "a", "b", &text), 0);
    cr_expect(strstr(text, "@@ -547,7 +547,7 @@\n 547\n 548\n 549\n-550\n+changed 550\n") != NULL, "%s", text);
    free(text);
    free(new_text);
    free(old_text);
}

struct invalid_case {
    const char *name;
    const char *old;
    size_t old_len;
    const char *new;
    const char *old_label;
    const char *new_label;
    bool null_ret;
};

static const struct invalid_case invalid_cases[] = {
    { "NULL new_text", "a\n", 2, NULL, "a", "b", false },
    { "NULL ret_text", "a\n", 2, "b\n", "a", "b", true },
    { "NULL new_label", "a\n", 2, "b\n", "a", NULL, false },
    { "NULL old_label with old_text", "a\n", 2, "b\n", NULL, "b", false },
    { "old_len without old_text", NULL, 2, "b\n", "a", "b", false },
    { "newline in old_label", "a\n", 2, "b\n", "a\n+++ forged", "b", false },
    { "newline in new_label", "a\n", 2, "b\n", "a", "b\n@@ -1 +1 @@", false },
};

ParameterizedTestParameters(udiff, refuses_invalid_arguments)
{
    INDEXES(invalid_cases);
}

ParameterizedTest(size_t *i, udiff, refuses_invalid_arguments)
{
    const struct invalid_case *c = &invalid_cases[*i];
    char sentinel = 0;
    char *text = &sentinel;
    int r;

    r = udiff_render(c->old, c->old_len, c->new, c->new ? strlen(c->new) : 0, c->old_label,
                     c->new_label, c->null_ret ? NULL : &text);
    cr_expect_eq(r, -EINVAL, "%s: got %d", c->name, r);
    cr_expect_eq(text, &sentinel, "%s: ret_text was written on failure", c->name);
}

/* The drop-in diff against GNU `diff -u --label OLD --label NEW`: every
 * expected string below is what GNU diff 3.8 printed for the same input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "udiff.h"

struct udiff_row {
    const char *name;
    const char *old_text; /* NULL: the file does not exist */
    const char *new_text;
    const char *expected;
};

static const struct udiff_row rows[] = {
    { "identical", "a\nb\n", "a\nb\n", "" },
    { "change in the middle", "a\nb\nc\nd\ne\nf\ng\nh\ni\n", "a\nb\nc\nd\nE\nf\ng\nh\ni\n",
      "--- OLD\n+++ NEW\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n" },
    { "changes far apart: two hunks",
      "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n20\n",
      "1\nX\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\nY\n20\n",
      "--- OLD\n+++ NEW\n@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n 4\n 5\n@@ -16,5 +16,5 @@\n 16\n 17\n 18\n-19\n+Y\n 20\n" },
    { "changes within 6 lines: one hunk", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nX\n3\n4\n5\n6\n7\nY\n9\n10\n",
      "--- OLD\n+++ NEW\n@@ -1,10 +1,10 @@\n 1\n-2\n+X\n 3\n 4\n 5\n 6\n 7\n-8\n+Y\n 9\n 10\n" },
    { "no final newline, new side", "a\nb\n", "a\nc",
      "--- OLD\n+++ NEW\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n" },
    { "no final newline, old side", "a\nb", "a\nb\n",
      "--- OLD\n+++ NEW\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n" },
    { "delete all", "a\nb\n", "", "--- OLD\n+++ NEW\n@@ -1,2 +0,0 @@\n-a\n-b\n" },
    { "insert at the start", "b\nc\n", "a\nb\nc\n", "--- OLD\n+++ NEW\n@@ -1,2 +1,3 @@\n+a\n b\n c\n" },
};

Test(udiff, matches_gnu_diff)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *text = NULL;
        int r = udiff_render(rows[i].old_text, rows[i].old_text ? strlen(rows[i].old_text) : 0, rows[i].new_text,
                             strlen(rows[i].new_text), "OLD", "NEW", &text);
        cr_assert_eq(r, 0, "%s: %d", rows[i].name, r);
        cr_expect_str_eq(text, rows[i].expected, "%s", rows[i].name);
        free(text);
    }
}

Test(udiff, new_file_is_all_additions)
{
    char *text = NULL;

    cr_assert_eq(udiff_render(NULL, 0, "x\ny\n", 4, "/dev/null", "NEW", &text), 0);
    cr_expect_str_eq(text, "--- /dev/null\n+++ NEW\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    free(text);
}

Test(udiff, refuses_what_it_cannot_do)
{
    size_t n = (UDIFF_MAX_LINES + 1) * 2;
    char *many = malloc(n + 1), *text = (char *)"untouched";

    for (size_t i = 0; i < n; i += 2)
        memcpy(many + i, "x\n", 2);
    many[n] = '\0';
    cr_expect_eq(udiff_render(many, n, "x\n", 2, "OLD", "NEW", &text), -E2BIG);
    cr_expect_str_eq(text, "untouched", "no output on failure");
    cr_expect_eq(udiff_render("a", 1, NULL, 0, "OLD", "NEW", &text), -EINVAL);
    free(many);
}

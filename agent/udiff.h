#pragma once
/* Unified diffs for `shmprov plan`: how a /etc/sysctl.d drop-in would change.
 * Pure (no I/O, no logging, no globals), so it is tested byte for byte
 * against GNU `diff -u` without root. */

#include <stddef.h>

/* Drop-ins are a few dozen lines; the caps bound the work and memory a
 * hostile or runaway file can cost: lines per side, and cells of the table
 * that compares the lines between the common head and tail (2 bytes each). */
#define UDIFF_MAX_LINES 4096
#define UDIFF_MAX_CELLS ((size_t)1 << 20)

/* Renders a unified diff of old -> new in GNU `diff -u` format (the same
 * bytes for the drop-in changes the tests pin; a longest common subsequence
 * of lines, not GNU's minimal-diff heuristics): 3 lines of
 * context, hunks closer than 7 unchanged lines merged, hunk headers
 * `@@ -a,b +c,d @@` (`-a` when b is 1, `-a,0` naming the line before an
 * empty range), and "\ No newline at end of file" after a last line that
 * lacks one. Texts are byte buffers split on '\n'; they need not be
 * NUL-terminated.
 *
 * old_text NULL means the file is absent: the header is "--- /dev/null",
 * old_label is ignored (it may be NULL) and old_len must be 0. Otherwise the
 * labels go on the ---/+++ lines verbatim, without timestamps; a label that
 * contains '\n' is refused, since it would forge diff lines.
 *
 * Returns 0 and sets *ret_text to a malloc'd NUL-terminated string, "" when
 * the texts have the same lines. On failure returns a negative errno and
 * leaves *ret_text untouched: -EINVAL for a NULL new_text, new_label or
 * ret_text (or old_label with a non-NULL old_text), -E2BIG when either side
 * has more than UDIFF_MAX_LINES lines or the lines that differ need more
 * than UDIFF_MAX_CELLS cells, -ENOMEM. */
int udiff_render(const char *old_text, size_t old_len,
                 const char *new_text, size_t new_len,
                 const char *old_label, const char *new_label,
                 char **ret_text);

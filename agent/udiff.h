#pragma once
/* Unified diffs for `shmprov plan`: how a /etc/sysctl.d drop-in would change.
 * Pure, so it is tested byte for byte against GNU `diff -u` without root. */

#include <stddef.h>

/* Caps on what a hostile file can cost: lines per side, and cells of the
 * table comparing the lines between the common head and tail. */
#define UDIFF_MAX_LINES 4096
#define UDIFF_MAX_CELLS ((size_t)1 << 20)

/* Renders a unified diff of old -> new as GNU `diff -u` does (a longest
 * common subsequence of lines, not GNU's heuristics): 3 lines of context,
 * hunks closer than 7 unchanged lines merged, "\ No newline at end of file"
 * after a last line that lacks one. Texts are byte buffers split on '\n'.
 *
 * old_text NULL means the file is absent: the header is "--- /dev/null",
 * old_label is ignored (it may be NULL) and old_len must be 0. Labels go on
 * the ---/+++ lines verbatim; one with a '\n' would forge lines: refused.
 *
 * Returns 0 and a malloc'd string in *ret_text, "" when the lines are the
 * same; or, leaving *ret_text alone, -EINVAL for bad arguments, -E2BIG past
 * UDIFF_MAX_LINES lines or UDIFF_MAX_CELLS cells, or -ENOMEM. */
int udiff_render(const char *old_text, size_t old_len, const char *new_text, size_t new_len,
                 const char *old_label, const char *new_label, char **ret_text);

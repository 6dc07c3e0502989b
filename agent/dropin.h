#pragma once
/* The text of shmprov's /etc/sysctl.d drop-in (README "The drop-in"). Deterministic:
 * the same profile and derivation give the same bytes, so an unchanged
 * apply writes nothing. No timestamps, no version number (an upgrade alone
 * must not rewrite every host's file). */

#include <stddef.h>

#include "profile.h"
#include "sizing.h"

/* The first line of every drop-in shmprov writes: what `shmprov remove`
 * looks for when no apply recorded the file's sha256. */
#define DROPIN_HEADER "# Managed by shmprov. Do not edit: the next 'shmprov apply' overwrites this file.\n"

/* Renders the drop-in for profile p and sizing result s. Returns 0 and a
 * malloc'd NUL-terminated text in *ret_text (length in *ret_len), or
 * -ENOMEM. */
int dropin_render(const struct profile *p, const struct sizing_result *s, char **ret_text, size_t *ret_len);

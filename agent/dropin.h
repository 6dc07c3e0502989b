#pragma once
/* The text of shmprov's /etc/sysctl.d drop-in (README "The drop-in"). Deterministic:
 * the same profile and derivation give the same bytes, so an unchanged
 * apply writes nothing. No timestamps, no version number (an upgrade alone
 * must not rewrite every host's file). */

#include <stddef.h>

#include "profile.h"
#include "sizing.h"

/* Renders the drop-in for profile p and sizing result s. Returns 0 and a
 * malloc'd NUL-terminated text in *ret_text (length in *ret_len), or
 * -ENOMEM. */
int dropin_render(const struct profile *p, const struct sizing_result *s, char **ret_text,
                  size_t *ret_len);

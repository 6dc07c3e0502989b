#pragma once
/* Shared by the unit tests: parse a profile from an inline YAML string. */
#include <criterion/criterion.h>
#include <string.h>

#include "profile.h"

static inline struct profile *parse_profile_or_die(const char *yaml)
{
    struct profile_diags diags;
    struct profile *p = NULL;
    int r;

    profile_diags_init(&diags, "test.yaml");
    r = profile_parse(yaml, strlen(yaml), "test.yaml", &diags, &p);
    if (r != 0)
        cr_assert_fail("profile did not parse (%d): %s", r,
                 diags.count ? diags.items[0].message : "(no message)");
    profile_diags_free(&diags);
    return p;
}

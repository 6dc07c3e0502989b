/* The profile parser: any bytes are either a profile or a rejection that
 * says why (README "Profile reference"), never a crash, a leak or a silent failure. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "testing.h"

#define FILE_NAME "fuzz.yaml"

static void check_limit(const struct profile_limit *l)
{
    char human[32];

    if (!l->set)
        return;
    if (l->size.kind == SIZE_PERCENT && (l->size.value < 1 || l->size.value > 100))
        abort();
    if (l->mark.line == 0 || l->mark.col == 0)
        abort();
    sizes_format_human(l->size.value, human, sizeof(human));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct profile_diags diags;
    struct profile *p = NULL;
    int r;

    profile_diags_init(&diags, FILE_NAME);
    r = profile_parse((const char *)data, size, FILE_NAME, &diags, &p);
    if (r == 0) {
        /* Accepted: no error left behind, and what was read is in range. */
        if (!p || diags.count != 0 || strcmp(p->path, FILE_NAME) != 0 || !p->dropin)
            abort();
        if (strlen(p->sha256_hex) != 64)
            abort();
        check_limit(&p->shmmax);
        check_limit(&p->shmall);
        check_limit(&p->shmmni);
        if (p->shmmni.set && p->shmmni.size.value > PROFILE_SHMMNI_MAX)
            abort();
        (void)profile_tier_name(p->ram_tier);
        (void)profile_workload_name(p->workload);
        (void)profile_policy_name(p->policy);
    } else if (r == -EINVAL) {
        /* Rejected: at least one message, each pointing into the file. */
        if (p || diags.count == 0)
            abort();
        for (size_t i = 0; i < diags.count; i++) {
            char line[512];

            if (!diags.items[i].message || diags.items[i].line == 0 || diags.items[i].col == 0)
                abort();
            snprintf(line, sizeof(line), "%s:%u:%u: error: %s", diags.file, diags.items[i].line,
                     diags.items[i].col, diags.items[i].message);
        }
    } else if (r != -ENOMEM) {
        abort();
    }
    profile_free(p);
    profile_diags_free(&diags);
    return 0;
}

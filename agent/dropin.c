#include "dropin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

int dropin_render(const struct profile *p, const struct sizing_result *s, char **ret_text, size_t *ret_len)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    bool failed;

    if (!f)
        return -ENOMEM;

    fputs(DROPIN_HEADER, f);
    fprintf(f, "# Change the profile instead, then run 'shmprov apply'.\n");
    fprintf(f, "# profile: %s\n", p->canonical_path);
    fprintf(f, "# profile sha256: %s\n", p->sha256_hex);
    fprintf(f, "# tier: %s (%s)\n", profile_tier_name(s->tier),
            s->tier_detected ? "auto, from MemTotal" : "from the profile");
    fprintf(f, "# workload: %s\n", profile_workload_name(p->workload));
    fprintf(f, "# RAM: %" PRIu64 " bytes\n", s->ram_bytes);
    fprintf(f, "# page size: %" PRIu64 " bytes\n", s->page_size);
    fprintf(f, "# policy: %s\n", profile_policy_name(p->policy));
    if (s->shmmax_overridden)
        fprintf(f, "# shmmax: set by the profile\n");
    else
        fprintf(f, "# shmmax: %u%% of RAM, rounded down to a whole page\n", s->fraction_pct);
    fprintf(f, "# shmall: %s\n", p->shmall.set ? "set by the profile" : "shmmax / page size");

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &s->keys[id];
        if (!k->managed)
            continue;
        if (k->persist)
            fprintf(f, "%s = %" PRIu64 "\n", sizing_key_name(id), k->target);
        else
            fprintf(f, "# %s: not set (raise-only, the running value is already higher)\n", sizing_key_name(id));
    }

    /* A failed fprintf() above leaves the stream's error flag set, and
     * fclose() need not report it: check both. */
    failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return -ENOMEM;
    }
    *ret_text = text;
    *ret_len = len;
    return 0;
}

/* The drop-in's text: exact, deterministic, and what raise-only leaves out. */
#include "dropin.h"
#include "helpers.h"

/* The drop-in for yaml with shmmax running at shmmax_now; the text keeps
 * nothing of the profile. */
static char *render(const char *yaml, uint64_t shmmax_now)
{
    struct profile *p = parse_profile_or_die(yaml);
    struct sizing_input in = {
        .profile = p,
        .memtotal_bytes = UINT64_C(8) << 30,
        .page_size = 4096,
        .current = { { true, true, true }, { shmmax_now, SIZING_KERNEL_DEFAULT, 4096 } },
    };
    struct sizing_result s;
    char *text = NULL;
    size_t len = 0;

    cr_assert_eq(sizing_compute(&in, &s), 0);
    cr_assert_eq(dropin_render(p, &s, &text, &len), 0);
    cr_assert_eq(strlen(text), len);
    profile_free(p);
    return text;
}

Test(dropin, exact_text)
{
    char *text = render("version: 1\nhost: {ram_tier: small, workload: database}\n", SIZING_KERNEL_DEFAULT);

    cr_expect_str_eq(text,
                     "# Managed by shmprov. Do not edit: the next 'shmprov apply' overwrites this file.\n"
                     "# Change the profile instead, then run 'shmprov apply'.\n"
                     "# profile: test.yaml\n"
                     "# profile sha256: a10c9640057a28c06f95d942224446f8fde26d0c1669b2ae363a2650d3b33136\n"
                     "# tier: small (from the profile)\n"
                     "# workload: database\n"
                     "# RAM: 8589934592 bytes\n"
                     "# page size: 4096 bytes\n"
                     "# policy: enforce\n"
                     "# shmmax: 50% of RAM, rounded down to a whole page\n"
                     "# shmall: shmmax / page size\n"
                     "kernel.shmmax = 4294967296\n"
                     "kernel.shmall = 1048576\n");
    free(text);
}

Test(dropin, deterministic_and_plain_decimal)
{
    char *a = render("version: 1\nlimits: {shmmni: 8192, shmmax: 8GiB}\n", 1);
    char *b = render("version: 1\nlimits: {shmmni: 8192, shmmax: 8GiB}\n", 1);

    cr_expect_str_eq(a, b);
    cr_expect(strstr(a, "\nkernel.shmmax = 8589934592\n"));
    cr_expect(strstr(a, "\nkernel.shmall = 2097152\n"));
    cr_expect(strstr(a, "\nkernel.shmmni = 8192\n"));
    cr_expect(strstr(a, "# shmmax: set by the profile\n"));
    cr_expect_null(strstr(a, "0x"));
    free(a);
    free(b);
}

Test(dropin, raise_only_leaves_higher_values_alone)
{
    char *text = render("version: 1\nhost: {ram_tier: small}\npolicy: raise-only\n", SIZING_KERNEL_DEFAULT);

    cr_expect(strstr(text, "\n# kernel.shmmax: not set (raise-only, the running value is already higher)\n"));
    cr_expect(strstr(text, "\n# kernel.shmall: not set (raise-only, the running value is already higher)\n"));
    cr_expect_null(strstr(text, "\nkernel.shm"));
    free(text);
}

#include <criterion/criterion.h>
#include <errno.h>

#include "sizes.h"

struct size_row {
    const char *text;
    bool percent_ok;
    int ret;
    enum size_kind kind;
    uint64_t value;
    const char *why;
};

static const struct size_row rows[] = {
    { "4096", false, 0, SIZE_BYTES, 4096, NULL },
    { "16GiB", false, 0, SIZE_BYTES, UINT64_C(17179869184), NULL },
    { "16G", false, 0, SIZE_BYTES, UINT64_C(17179869184), NULL },
    { "16 GiB", false, 0, SIZE_BYTES, UINT64_C(17179869184), NULL },
    { "512M", false, 0, SIZE_BYTES, UINT64_C(536870912), NULL },
    { "512MiB", false, 0, SIZE_BYTES, UINT64_C(536870912), NULL },
    { "4K", false, 0, SIZE_BYTES, 4096, NULL },
    { "4KiB", false, 0, SIZE_BYTES, 4096, NULL },
    { "2T", false, 0, SIZE_BYTES, UINT64_C(2199023255552), NULL },
    { "2TiB", false, 0, SIZE_BYTES, UINT64_C(2199023255552), NULL },
    { "0", false, 0, SIZE_BYTES, 0, NULL },
    { "18446744073709551615", false, 0, SIZE_BYTES, UINT64_MAX, NULL },
    { "60%", true, 0, SIZE_PERCENT, 60, NULL },
    { "100%", true, 0, SIZE_PERCENT, 100, NULL },
    { "1%", true, 0, SIZE_PERCENT, 1, NULL },
    { "18446744073709551616", false, -ERANGE, 0, 0, "number does not fit in 64 bits" },
    { "16777216T", false, -ERANGE, 0, 0, "size does not fit in 64 bits" },
    { "16777215T", false, 0, SIZE_BYTES, UINT64_C(18446742974197923840), NULL },
    { "16GB", false, -EINVAL, 0, 0, "ambiguous unit: write KiB/MiB/GiB/TiB or K/M/G/T (shmprov units are powers of 1024)" },
    { "16gb", false, -EINVAL, 0, 0, "ambiguous unit: write KiB/MiB/GiB/TiB or K/M/G/T (shmprov units are powers of 1024)" },
    { "16gib", false, -EINVAL, 0, 0, "unknown unit: use K, M, G, T, KiB, MiB, GiB or TiB (powers of 1024)" },
    { "16 ", false, -EINVAL, 0, 0, "trailing space after the number" },
    { "16  G", false, -EINVAL, 0, 0, "unknown unit: use K, M, G, T, KiB, MiB, GiB or TiB (powers of 1024)" },
    { "-1", false, -EINVAL, 0, 0, "size must not be negative" },
    { "", false, -EINVAL, 0, 0, "not a size: expected a number of bytes, optionally with a unit (K, M, G, T, KiB, MiB, GiB, TiB)" },
    { "0x10", false, -EINVAL, 0, 0, "hexadecimal is not allowed: write plain decimal" },
    { "010", false, -EINVAL, 0, 0, "leading zero: write plain decimal (YAML and the kernel read 010 as octal)" },
    { "60%", false, -EINVAL, 0, 0, "a percentage of RAM is only allowed for limits.shmmax" },
    { "0%", true, -EINVAL, 0, 0, "percentage must be a whole number from 1% to 100%" },
    { "101%", true, -EINVAL, 0, 0, "percentage must be a whole number from 1% to 100%" },
    { "050%", true, -EINVAL, 0, 0, "percentage must be a whole number from 1% to 100%" },
    { "1.5G", false, -EINVAL, 0, 0, "unknown unit: use K, M, G, T, KiB, MiB, GiB or TiB (powers of 1024)" },
};

Test(sizes, parse_table)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct size_value v = { SIZE_BYTES, 12345 };
        const char *why = NULL;
        int r = sizes_parse(rows[i].text, rows[i].percent_ok, &v, &why);

        cr_expect_eq(r, rows[i].ret, "'%s': returned %d, expected %d", rows[i].text, r, rows[i].ret);
        if (rows[i].ret == 0) {
            cr_expect_eq(v.kind, rows[i].kind, "'%s' kind", rows[i].text);
            cr_expect_eq(v.value, rows[i].value, "'%s': %llu", rows[i].text, (unsigned long long)v.value);
        } else {
            cr_expect_str_eq(why, rows[i].why, "'%s'", rows[i].text);
            cr_expect_eq(v.value, 12345, "'%s': output written on failure", rows[i].text);
        }
    }
}

Test(sizes, parse_uint_rejects_what_yaml_or_the_kernel_would_misread)
{
    static const char *const bad[] = { "", "+1", "-1", "010", "0x1f", "1_000", "1e3", "1.0", " 1", "1 " };
    uint64_t v;
    const char *why;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_lt(sizes_parse_uint(bad[i], &v, &why), 0, "'%s' accepted", bad[i]);
    cr_expect_eq(sizes_parse_uint("0", &v, &why), 0);
    cr_expect_eq(v, 0);
}

Test(sizes, format_human)
{
    static const struct {
        uint64_t bytes;
        const char *text;
    } hrows[] = {
        { 0, "0 B" },
        { 1023, "1023 B" },
        { 4096, "4 KiB" },
        { UINT64_C(17179869184), "16 GiB" },
        { UINT64_C(12582912000), "11.7 GiB" },
        { UINT64_C(18446744073692774399), "15.9 EiB" },
        { 1536, "1.5 KiB" },
    };
    char buf[32];

    for (size_t i = 0; i < sizeof(hrows) / sizeof(hrows[0]); i++) {
        sizes_format_human(hrows[i].bytes, buf, sizeof(buf));
        cr_expect_str_eq(buf, hrows[i].text);
    }
}

/* /proc/sysvipc/shm rows: every column, the flags in the mode word, and
 * every way the text can be wrong (each must be refused, never half-read),
 * through shmseg_parse() and host_parse_sysvipc_shm(), which sums them. */
#include "helpers.h"
#include "shmseg.h"

#define HEADER                                                                                          \
    "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      " \
    "atime      dtime      ctime                   rss                  swap\n"

static struct shmseg_table *parse_ok(const char *text)
{
    struct shmseg_table *t = NULL;
    int r = shmseg_parse(text, strlen(text), &t);

    cr_assert_eq(r, 0, "shmseg_parse refused valid text (%d)", r);
    return t;
}

Test(shmseg, every_column)
{
    struct shmseg_table *t = parse_ok(
        HEADER
        "  5432001      32769  1600              56623104  4102  4177      5    26    27     0     0 1795967600 1795967601 1795967657              4096000                  8192\n"
        "-559038737          1  2600            4294967296  3852     0      0  1000  1001  1002  1003          0          0 1795967657                     0                     0\n");
    const struct shmseg *a = &t->items[0], *b = &t->items[1];

    cr_assert_eq(t->count, 2);
    cr_expect_eq(a->key, 5432001u);
    cr_expect_eq(a->id, 32769);
    cr_expect_eq(a->mode, 01600u);
    cr_expect(a->mode & SHMSEG_MODE_DEST);
    cr_expect_not(a->mode & SHMSEG_MODE_LOCKED);
    cr_expect_eq(a->size, UINT64_C(56623104));
    cr_expect_eq(a->cpid, 4102);
    cr_expect_eq(a->lpid, 4177);
    cr_expect_eq(a->nattch, 5);
    cr_expect_eq(a->uid, 26);
    cr_expect_eq(a->gid, 27);
    cr_expect_eq(a->atime, 1795967600);
    cr_expect_eq(a->dtime, 1795967601);
    cr_expect_eq(a->ctime, 1795967657);
    cr_expect_eq(a->rss, 4096000);
    cr_expect_eq(a->swap, 8192);
    cr_expect_eq(b->key, 0xdeadbeefu, "a negative key is the key_t's bits");
    cr_expect(b->mode & SHMSEG_MODE_LOCKED);
    cr_expect_eq(b->cuid, 1002);
    cr_expect_eq(b->cgid, 1003);
    cr_expect_eq(b->lpid, 0);
    free(t);
}

Test(shmseg, old_kernels_without_rss_and_swap)
{
    struct shmseg_table *t = parse_ok(
        HEADER "         0          0   600                 10000  3851     0      0     0     0     0     0          0          0 1795967657\n");

    cr_assert_eq(t->count, 1);
    cr_expect_eq(t->items[0].rss, 0);
    free(t);
}

Test(shmseg, empty_table)
{
    struct shmseg_table *t = parse_ok(HEADER);
    struct sizing_usage u = { .segments = 99 };

    cr_expect_eq(t->count, 0);
    free(t);
    cr_expect_eq(host_parse_sysvipc_shm(HEADER, 4096, &u), 0);
    cr_expect_eq(u.segments, 0);
}

Test(shmseg, usage_sums_whole_pages)
{
    static const char text[] =
        HEADER
        "         0          0   600                 10000  3851     0      0     0     0     0     0          0          0 1795967657 0 0\n"
        "-559038737          1  1666            4294967296  3852  3852      1     0     0     0     0          0          0 1795967657 0 0\n"
        "        42          2   600                  4096  3853     0      0     0     0     0     0          0          0 1795967657 0 0\n";
    struct shmseg_table *t = parse_ok(text);
    struct sizing_usage u, host;

    cr_assert_eq(shmseg_usage(t, 4096, &u), 0);
    cr_expect_eq(u.segments, 3);
    cr_expect_eq(u.bytes, UINT64_C(10000) + UINT64_C(4294967296) + 4096);
    cr_expect_eq(u.pages, 3 + 1048576 + 1, "10000 bytes take 3 whole pages");
    cr_expect_eq(u.largest_segment, UINT64_C(4294967296));
    cr_assert_eq(host_parse_sysvipc_shm(text, 4096, &host), 0);
    cr_expect_eq(memcmp(&host, &u, sizeof(u)), 0, "the host's sums are shmseg_usage()'s");
    cr_expect_eq(shmseg_usage(t, 0, &u), -EINVAL);
    cr_expect_eq(host_parse_sysvipc_shm(HEADER, 0, &u), -EINVAL);
    free(t);
}

Test(shmseg, usage_saturates_instead_of_wrapping)
{
    struct sizing_usage u;
    struct shmseg_table *t = parse_ok(
        HEADER
        "         1          0   600  18446744073709551615  3851     0      0     0     0     0     0          0          0 1 0 0\n"
        "         2          1   600                     1  3851     0      0     0     0     0     0          0          0 1 0 0\n");

    cr_assert_eq(shmseg_usage(t, 4096, &u), 0);
    cr_expect_eq(u.bytes, UINT64_MAX);
    cr_expect_eq(u.largest_segment, UINT64_MAX);
    free(t);
}

Test(shmseg, perms_text)
{
    char buf[10];

    shmseg_perms_text(01640, buf);
    cr_expect_str_eq(buf, "rw-r-----");
    shmseg_perms_text(0777, buf);
    cr_expect_str_eq(buf, "rwxrwxrwx");
}

Test(shmseg, malformed_text_is_refused_whole)
{
    static const struct {
        const char *name, *text;
    } cases[] = {
        { "empty", "" },
        { "garbage", "garbage\n" },
        { "no header", "         0          0   600  10000  1 0 0 0 0 0 0 0 0 1\n" },
        { "header only, no newline", "       key      shmid perms" },
        { "row cut short (no newline)", HEADER "         0          0   600" },
        { "last row without newline", HEADER "0 0 600 1 1 0 0 0 0 0 0 0 0 1" },
        { "too few columns", HEADER "0 0 600 1 1 0 0 0 0 0 0 0 0\n" },
        { "three columns", HEADER "x y z\n" },
        { "too many columns", HEADER "0 0 600 1 1 0 0 0 0 0 0 0 0 1 0 0 9\n" },
        { "letters", HEADER "0 0 600 1x 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "octal perms with 8", HEADER "0 0 680 1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "perms beyond 07777", HEADER "0 0 17777 1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "size beyond 64 bits", HEADER "0 0 600 18446744073709551616 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "key beyond int", HEADER "2147483648 0 600 1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "key below int", HEADER "-2147483649 0 600 1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "negative id", HEADER "0 -1 600 1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "negative size", HEADER "0 0 600 -1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "pid beyond pid_t", HEADER "0 0 600 1 4294967296 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "uid beyond 32 bits", HEADER "0 0 600 1 1 0 0 4294967296 0 0 0 0 0 1 0 0\n" },
        { "plus sign", HEADER "0 0 600 +1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "tab", HEADER "0 0 600 1\t1 0 0 0 0 0 0 0 0 1 0 0\n" },
        { "blank row", HEADER "\n" },
        { "lone minus", HEADER "- 0 600 1 1 0 0 0 0 0 0 0 0 1 0 0\n" },
    };

    /* Two good rows with a NUL between them, the whole length given. */
    static const char nul_inside[] = HEADER "0 0 600 1 1 0 0 0 0 0 0 0 0 1 0 0\n\0" "0 0 600 1 1 0 0 0 0 0 0 0 0 1 0 0\n";
    struct shmseg_table *whole = NULL;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct shmseg_table *t = NULL;
        struct sizing_usage u;

        cr_expect_eq(shmseg_parse(cases[i].text, strlen(cases[i].text), &t), -EINVAL, "%s: accepted", cases[i].name);
        cr_expect_null(t, "%s: a table was returned", cases[i].name);
        cr_expect_eq(host_parse_sysvipc_shm(cases[i].text, 4096, &u), -EINVAL, "%s: summed", cases[i].name);
    }
    cr_expect_eq(shmseg_parse(nul_inside, sizeof(nul_inside) - 1, &whole), -EINVAL, "NUL inside: accepted");
    cr_expect_null(whole, "NUL inside: a table was returned");
}

#include <criterion/criterion.h>
#include <errno.h>

#include "host.h"
#include "testing.h"

Test(host, meminfo)
{
    uint64_t bytes = 0;

    cr_expect_eq(host_parse_meminfo("MemTotal:       24567892 kB\nMemFree: 1 kB\n", &bytes), 0);
    cr_expect_eq(bytes, UINT64_C(24567892) * 1024);
    cr_expect_eq(host_parse_meminfo("MemFree: 1 kB\nMemTotal: 8 kB\n", &bytes), 0);
    cr_expect_eq(bytes, 8192);
    cr_expect_eq(host_parse_meminfo("MemFree: 1 kB\n", &bytes), -EINVAL);
    cr_expect_eq(host_parse_meminfo("MemTotal: 0 kB\n", &bytes), -EINVAL);
    cr_expect_eq(host_parse_meminfo("MemTotal: 12 MB\n", &bytes), -EINVAL);
    cr_expect_eq(host_parse_meminfo("MemTotal: 99999999999999999999999 kB\n", &bytes), -EINVAL);
    cr_expect_eq(host_parse_meminfo("MemTotal: 18014398509481984 kB\n", &bytes), -EINVAL, "overflows when x1024");
    cr_expect_eq(host_parse_meminfo("", &bytes), -EINVAL);
}

Test(host, reads_this_host)
{
    struct host_facts f;

    cr_assert_eq(host_read(&f), 0);
    host_facts_free(&f);
    cr_expect_gt(f.page_size, 0);
    cr_expect_eq(f.page_size & (f.page_size - 1), 0, "page size is a power of two");
    cr_expect_gt(f.memtotal_bytes, 0);
    cr_expect(f.current.known[SIZING_KEY_SHMMAX]);
    cr_expect(f.current.known[SIZING_KEY_SHMALL]);
    cr_expect(f.usage_known);
}

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

#define SHM_HEADER                                                                                      \
    "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      " \
    "atime      dtime      ctime                   rss                  swap\n"

Test(host, sysvipc_shm_sums_segments)
{
    struct sizing_usage u;
    const char *text = SHM_HEADER
        "         0          0   600                 10000  3851     0      0     0     0     0     0          0          0 1795967657                     0                     0\n"
        "-559038737          1  1666            4294967296  3852  3852      1     0     0     0     0          0          0 1795967657                     0                     0\n"
        "        42          2   600                  4096  3853     0      0     0     0     0     0          0          0 1795967657                     0                     0\n";

    cr_assert_eq(host_parse_sysvipc_shm(text, 4096, &u), 0);
    cr_expect_eq(u.segments, 3);
    cr_expect_eq(u.bytes, UINT64_C(10000) + UINT64_C(4294967296) + 4096);
    cr_expect_eq(u.pages, 3 + 1048576 + 1, "10000 bytes take 3 whole pages");
    cr_expect_eq(u.largest_segment, UINT64_C(4294967296));
}

Test(host, sysvipc_shm_empty_and_malformed)
{
    struct sizing_usage u = { .segments = 99 };

    cr_expect_eq(host_parse_sysvipc_shm(SHM_HEADER, 4096, &u), 0);
    cr_expect_eq(u.segments, 0);
    cr_expect_eq(host_parse_sysvipc_shm("", 4096, &u), -EINVAL);
    cr_expect_eq(host_parse_sysvipc_shm("garbage\n", 4096, &u), -EINVAL);
    cr_expect_eq(host_parse_sysvipc_shm(SHM_HEADER "         0          0   600", 4096, &u), -EINVAL, "truncated line");
    cr_expect_eq(host_parse_sysvipc_shm(SHM_HEADER "x y z\n", 4096, &u), -EINVAL);
    cr_expect_eq(host_parse_sysvipc_shm(SHM_HEADER, 0, &u), -EINVAL);
}

Test(host, reads_this_host)
{
    struct host_facts f;

    cr_assert_eq(host_read(&f), 0);
    host_facts_free(&f);
    cr_expect_gt(f.page_size, 0);
    cr_expect_eq(f.page_size & (f.page_size - 1), 0, "page size is a power of two");
    cr_expect_gt(f.memtotal_bytes, 0);
    cr_expect(f.current.known[KEY_SHMMAX]);
    cr_expect(f.current.known[KEY_SHMALL]);
    cr_expect(f.usage_known);
}

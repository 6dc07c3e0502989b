/* The probe against the real kernel. Every test that reaches shmget first
 * moves into a private IPC namespace (isolate.h: skipped when not root,
 * failed when root cannot) and sets that namespace's limits through /proc/sys/kernel, which changes
 * nothing outside it: each such test ends by checking, from the namespace it
 * left, that the outer kernel.shmmax is what it was, and that no segment the
 * probe made is left in /proc/sysvipc/shm. The pure helpers are tested
 * without privileges. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "probe.h"
#include "sizing.h"
#include "testing.h"
#include "helpers.h"
#include "isolate.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define MAX_SEGMENTS 64

static int outer_ns_fd = -1;
static char outer_shmmax[32];

static uint64_t page(void)
{
    long p = sysconf(_SC_PAGESIZE);

    cr_assert_gt(p, 0);
    return (uint64_t)p;
}

static uint64_t pages_of(uint64_t bytes)
{
    return bytes / page() + (bytes % page() != 0);
}

static void read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");

    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert_not_null(fgets(buf, (int)len, f), "cannot read %s", path);
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

static uint64_t read_proc(const char *path)
{
    char buf[64], *end;
    unsigned long long v;

    read_text(path, buf, sizeof(buf));
    errno = 0;
    v = strtoull(buf, &end, 10);
    cr_assert(errno == 0 && end != buf && *end == '\0', "%s holds '%s', not a number", path, buf);
    return v;
}

static void write_proc(const char *path, uint64_t value)
{
    char buf[32];
    int fd, n;

    n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", value);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "cannot open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, buf, (size_t)n), n, "cannot write %" PRIu64 " to %s: %s", value, path, strerror(errno));
    close(fd);
    cr_assert_eq(read_proc(path), value, "%s does not read back %" PRIu64, path, value);
}

/* Leaves the host's IPC namespace for a private one, remembering the way
 * back so the end of the test can look at the outer limits. */
static void enter_private_ipc(void)
{
    read_text("/proc/sys/kernel/shmmax", outer_shmmax, sizeof(outer_shmmax));
    outer_ns_fd = open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(outer_ns_fd, 0, "cannot open /proc/self/ns/ipc: %s", strerror(errno));
    isolate(CLONE_NEWIPC, "creates real SysV segments and changes kernel.shm* limits");
    cr_assert_eq(read_proc("/proc/sys/kernel/shmmax"), SIZING_KERNEL_DEFAULT, "a new IPC namespace starts with the defaults");
}

static void set_limits(uint64_t shmmax, uint64_t shmall, uint64_t shmmni)
{
    write_proc("/proc/sys/kernel/shmmax", shmmax);
    write_proc("/proc/sys/kernel/shmall", shmall);
    write_proc("/proc/sys/kernel/shmmni", shmmni);
}

static struct probe_limits limits_of(uint64_t shmmax, uint64_t shmall, uint64_t shmmni)
{
    struct probe_limits l = {
        .shmmax = shmmax,
        .shmall = shmall,
        .shmmni = shmmni,
        .page_size = page(),
        /* Read only: vm.overcommit_memory is global, never changed here. */
        .overcommit_memory = (int)read_proc("/proc/sys/vm/overcommit_memory"),
    };
    return l;
}

/* The ids in /proc/sysvipc/shm, the table ipcs -m prints. */
static size_t list_segments(int *ids, size_t max)
{
    FILE *f = fopen("/proc/sysvipc/shm", "re");
    char line[512];
    size_t n = 0;

    cr_assert_not_null(f, "cannot open /proc/sysvipc/shm: %s", strerror(errno));
    cr_assert_not_null(fgets(line, sizeof(line), f), "/proc/sysvipc/shm has no header");
    while (fgets(line, sizeof(line), f)) {
        long long key;
        int id;
        cr_assert_eq(sscanf(line, "%lld %d", &key, &id), 2, "malformed line in /proc/sysvipc/shm: %s", line);
        cr_assert_lt(n, max);
        ids[n++] = id;
    }
    fclose(f);
    return n;
}

/* Exactly the segments the test made itself are left: none of the probe's. */
static void assert_only_segments(const int *mine, size_t nmine)
{
    int seen[MAX_SEGMENTS];
    size_t n = list_segments(seen, MAX_SEGMENTS);

    for (size_t i = 0; i < n; i++) {
        bool ours = false;
        for (size_t j = 0; j < nmine; j++)
            ours = ours || seen[i] == mine[j];
        cr_expect(ours, "segment %d in /proc/sysvipc/shm was left by the probe", seen[i]);
    }
    cr_expect_eq(n, nmine, "%zu segments in /proc/sysvipc/shm, the test made %zu", n, nmine);
}

/* From a child that rejoins the namespace the test left: its shmmax must
 * be what it was before the test wrote its own. */
static void assert_outer_untouched(void)
{
    int status;
    pid_t pid = fork();

    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        char now[32];
        FILE *f;
        if (setns(outer_ns_fd, CLONE_NEWIPC) < 0)
            _exit(2);
        f = fopen("/proc/sys/kernel/shmmax", "re");
        if (!f || !fgets(now, sizeof(now), f))
            _exit(3);
        now[strcspn(now, "\n")] = '\0';
        _exit(strcmp(now, outer_shmmax) == 0 ? 0 : 1);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the checking child died");
    cr_assert_neq(WEXITSTATUS(status), 2, "setns back to the outer IPC namespace failed");
    cr_assert_neq(WEXITSTATUS(status), 3, "cannot read the outer kernel.shmmax");
    cr_assert_eq(WEXITSTATUS(status), 0, "the outer kernel.shmmax changed from %s", outer_shmmax);
}

static void leave_checks(const int *mine, size_t nmine)
{
    assert_only_segments(mine, nmine);
    assert_outer_untouched();
}

static int make_segment(uint64_t bytes)
{
    int id = shmget(IPC_PRIVATE, (size_t)bytes, IPC_CREAT | 0600);

    cr_assert_geq(id, 0, "test segment of %" PRIu64 " bytes: %s", bytes, strerror(errno));
    return id;
}

static void remove_segments(const int *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(shmctl(ids[i], IPC_RMID, NULL), 0, "IPC_RMID %d: %s", ids[i], strerror(errno));
}

static void run_probe(const struct probe_limits *l, struct probe_result *res)
{
    int r = probe_run(l, res);

    cr_assert_eq(r, 0, "probe_run: %s", strerror(-r));
    cr_log_info("upper bound %s: %s", probe_status_name(res->upper_bound.status), res->upper_bound.detail);
    cr_log_info("acceptance %s: %s", probe_status_name(res->acceptance.status), res->acceptance.detail);
    cr_log_info("round trip %s: %s", probe_status_name(res->round_trip.status), res->round_trip.detail);
}

#define expect_step(step, want, want_err)                                                                       \
    do {                                                                                                        \
        cr_expect_eq((step).status, (want), #step ": %s, expected %s (%s)", probe_status_name((step).status),    \
                     probe_status_name(want), (step).detail);                                                   \
        cr_expect_eq((step).err, (want_err), #step ": errno %d, expected %d (%s)", (step).err, (want_err),      \
                     (step).detail);                                                                            \
    } while (0)

/* ---- pure helpers, no privileges --------------------------------------- */

Test(probe_pure, status_names)
{
    cr_expect_str_eq(probe_status_name(PROBE_PASSED), "passed");
    cr_expect_str_eq(probe_status_name(PROBE_FAILED), "failed");
    cr_expect_str_eq(probe_status_name(PROBE_SKIPPED), "skipped");
}

Test(probe_pure, testable_threshold)
{
    static const struct {
        uint64_t shmmax;
        bool testable;
    } rows[] = {
        { 0, true },
        { 4096, true },
        { UINT64_C(68719476736), true },
        { (uint64_t)INT64_MAX - 1, true }, /* shmmax + 1 == MAX_LFS_FILESIZE still tests */
        { (uint64_t)INT64_MAX, false },
        { SIZING_KERNEL_DEFAULT, false },
        { UINT64_MAX, false },
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        cr_expect_eq(probe_shmmax_testable(rows[i].shmmax), rows[i].testable, "shmmax %" PRIu64,
                     rows[i].shmmax);
}

Test(probe_pure, headroom)
{
    static const struct {
        uint64_t shmmax, shmall, shmmni, page, shm_tot, segments, headroom;
    } rows[] = {
        /* room for a whole shmmax */
        { 1 * MiB, 1024, 16, 4096, 0, 0, 1 * MiB },
        /* shmall binds: 10 pages left */
        { 1 * MiB, 1024, 16, 4096, 1014, 3, 40960 },
        { 1 * MiB, 64, 16, 65536, 60, 3, 4 * 65536 },
        /* full, or over-full after shmall was lowered below usage */
        { 1 * MiB, 1024, 16, 4096, 1024, 3, 0 },
        { 1 * MiB, 1024, 16, 4096, 5000, 3, 0 },
        /* every id taken */
        { 1 * MiB, 1024, 2, 4096, 0, 2, 0 },
        { 1 * MiB, 1024, 2, 4096, 0, 3, 0 },
        /* kernel defaults: pages x page size saturates, shmmax binds */
        { SIZING_KERNEL_DEFAULT, SIZING_KERNEL_DEFAULT, 4096, 4096, 7, 1, SIZING_KERNEL_DEFAULT },
        /* shmall defaults with a finite shmmax */
        { 64 * GiB, SIZING_KERNEL_DEFAULT, 4096, 65536, 0, 0, 64 * GiB },
        { 1 * MiB, 1024, 16, 0, 0, 0, 0 },
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct probe_limits l = { .shmmax = rows[i].shmmax, .shmall = rows[i].shmall, .shmmni = rows[i].shmmni,
                                  .page_size = rows[i].page };
        cr_expect_eq(probe_headroom(&l, rows[i].shm_tot, rows[i].segments), rows[i].headroom, "row %zu", i);
    }
}

Test(probe_pure, persistent_probe_key)
{
    static const uint32_t none[] = { 0x0052e2c1 }, listed[] = { 0x0052e2c1, SHMPROV_PROBE_KEY };

    cr_expect_eq(SHMPROV_PROBE_KEY, 0x73686d70, "the documented key");
    cr_expect_not(probe_key_persistent(NULL, 0));
    cr_expect_not(probe_key_persistent(none, 1));
    cr_expect(probe_key_persistent(listed, 2));
}

/* ---- against the kernel, in a private IPC namespace ----------------------- */

Test(probe, refuses_unusable_limits_and_writes_nothing)
{
    struct probe_limits l;
    struct probe_result res, before;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);
    memset(&res, 0xA5, sizeof(res));
    before = res;

    l.page_size = page() * 2;
    cr_expect_eq(probe_run(&l, &res), -EINVAL, "a page size that is not the kernel's");
    l.page_size = 0;
    cr_expect_eq(probe_run(&l, &res), -EINVAL);
    cr_expect_eq(probe_run(NULL, &res), -EINVAL);
    cr_expect_eq(memcmp(&res, &before, sizeof(res)), 0, "outputs are written only on success");
    leave_checks(NULL, 0);
}

/* Limits in effect, from a small finite one to the largest a request of one
 * byte more can test: all three steps pass and nothing is left. */
Test(probe, limits_in_effect_all_steps_pass)
{
    const uint64_t p = page();
    static const struct {
        uint64_t shmmax;
        bool default_shmall;
    } rows[] = {
        { 2 * MiB, false },
        { 1000000, false }, /* not a whole number of pages */
        { 64 * GiB, false }, /* the guide's large tier; SHM_NORESERVE, never touched */
        { UINT64_C(1) << 62, true },
        { (uint64_t)INT64_MAX - 1, true },
    };

    enter_private_ipc();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t shmmax = rows[i].shmmax;
        uint64_t shmall = rows[i].default_shmall ? SIZING_KERNEL_DEFAULT : 2 * pages_of(shmmax);
        struct probe_limits l;
        struct probe_result res;

        cr_log_info("shmmax %" PRIu64 ", shmall %" PRIu64, shmmax, shmall);
        set_limits(shmmax, shmall, 16);
        l = limits_of(shmmax, shmall, 16);
        run_probe(&l, &res);

        expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
        cr_expect_eq(res.upper_bound.bytes, shmmax + 1);
        cr_expect_eq(res.acceptance.status, PROBE_PASSED, "acceptance: %s", res.acceptance.detail);
        if (l.overcommit_memory == 2)
            cr_expect(res.acceptance.err == 0 || res.acceptance.err == ENOMEM, "%s", res.acceptance.detail);
        else
            cr_expect_eq(res.acceptance.err, 0, "%s", res.acceptance.detail);
        cr_expect_eq(res.acceptance.bytes, shmmax);
        expect_step(res.round_trip, PROBE_PASSED, 0);
        cr_expect_eq(res.round_trip.bytes, p);
        cr_expect(res.passed);
        cr_expect_eq(res.shm_tot_pages, 0);
        cr_expect_eq(res.segments, 0);
        cr_expect_eq(res.headroom_bytes, shmmax);
        assert_only_segments(NULL, 0);
    }
    leave_checks(NULL, 0);
}

/* The kernel allows 2 MiB but the probe is told 1 MiB: the limit the agent
 * believes in is not in effect, and the segment proving it is gone. */
Test(probe, limit_not_in_effect_fails_upper_bound)
{
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(1 * MiB, pages_of(8 * MiB), 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_FAILED, 0);
    cr_expect_eq(res.upper_bound.bytes, 1 * MiB + 1);
    cr_expect(strstr(res.upper_bound.detail, "not in effect"), "%s", res.upper_bound.detail);
    expect_step(res.acceptance, PROBE_PASSED, 0);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect_not(res.passed);
    leave_checks(NULL, 0);
}

/* The kernel's shmmax is below what the probe is told: the upper bound
 * cannot tell, the acceptance does. */
Test(probe, kernel_shmmax_lower_fails_acceptance)
{
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(1 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_FAILED, EINVAL);
    cr_expect(strstr(res.acceptance.detail, "below 2097152"), "%s", res.acceptance.detail);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect_not(res.passed);
    leave_checks(NULL, 0);
}

/* The kernel's shmall is below what the probe is told: usage leaves room by
 * the told value, the kernel says ENOSPC, and a second look at usage shows
 * nobody else took the room. */
Test(probe, kernel_shmall_lower_fails_acceptance)
{
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(1 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(4 * MiB), 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_FAILED, ENOSPC);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect_not(res.passed);
    leave_checks(NULL, 0);
}

/* Other segments hold shm_tot two pages short of shmall: a shmmax segment
 * does not fit, which is reported as headroom, not as a failure; a one-page
 * round trip still fits. */
Test(probe, no_room_reports_headroom)
{
    const uint64_t p = page(), shmmax = 1 * MiB, per = pages_of(shmmax), shmall = 4 * per;
    int mine[4];
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(shmmax, shmall, 16);
    for (int i = 0; i < 3; i++)
        mine[i] = make_segment(shmmax);
    mine[3] = make_segment((per - 2) * p);
    l = limits_of(shmmax, shmall, 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_SKIPPED, ENOSPC);
    cr_expect(strstr(res.acceptance.detail, "no room"), "%s", res.acceptance.detail);
    cr_expect_eq(res.acceptance.bytes, shmmax, "asked anyway, and the kernel said ENOSPC");
    cr_expect_eq(res.shm_tot_pages, shmall - 2);
    cr_expect_eq(res.segments, 4);
    cr_expect_eq(res.headroom_bytes, 2 * p);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect(res.passed, "no room is not a failure");
    leave_checks(mine, 4);

    /* The headroom is exact: a segment of that size fits, one byte more not. */
    {
        int id = shmget(IPC_PRIVATE, (size_t)res.headroom_bytes + 1, IPC_CREAT | 0600);
        cr_expect_lt(id, 0, "one byte more than the headroom");
        cr_expect_eq(errno, ENOSPC);
        id = make_segment(res.headroom_bytes);
        remove_segments(&id, 1);
    }
    remove_segments(mine, 4);
    assert_only_segments(NULL, 0);
}

/* No room, yet the acceptance still asks: the kernel checks the size
 * before the room, so a shmmax below the one the probe is told shows as
 * EINVAL instead of hiding behind "no room". */
Test(probe, no_room_still_catches_lower_shmmax)
{
    const uint64_t shmmax = 2 * MiB, shmall = pages_of(shmmax);
    int mine[1];
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(1 * MiB, shmall, 16);
    mine[0] = make_segment(1 * MiB);
    l = limits_of(shmmax, shmall, 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_FAILED, EINVAL);
    cr_expect_not(res.passed);
    leave_checks(mine, 1);
}

/* No room by the shmall the probe is told, but the kernel's is higher: the
 * segment is created (and removed), which shows the cap is not in effect. */
Test(probe, no_room_catches_higher_shmall)
{
    const uint64_t shmmax = 1 * MiB, per = pages_of(shmmax);
    int mine[1];
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(shmmax, 4 * per, 16);
    mine[0] = make_segment(shmmax);
    l = limits_of(shmmax, per, 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_FAILED, 0);
    cr_expect(strstr(res.acceptance.detail, "in effect is higher"), "%s", res.acceptance.detail);
    expect_step(res.round_trip, PROBE_SKIPPED, 0);
    cr_expect_not(res.passed);
    leave_checks(mine, 1);
}

/* shm_tot == shmall: not even the round trip's page fits. */
Test(probe, full_skips_acceptance_and_round_trip)
{
    const uint64_t shmmax = 1 * MiB, shmall = pages_of(shmmax);
    int mine[1];
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(shmmax, shmall, 16);
    mine[0] = make_segment(shmmax);
    l = limits_of(shmmax, shmall, 16);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_SKIPPED, ENOSPC);
    expect_step(res.round_trip, PROBE_SKIPPED, 0);
    cr_expect_eq(res.headroom_bytes, 0);
    cr_expect(res.passed);
    leave_checks(mine, 1);
}

/* Every id taken (used_ids == shmmni): skipped, headroom 0. The upper bound
 * still runs: the kernel checks the size before it looks for an id. */
Test(probe, shmmni_exhausted_skips)
{
    int mine[2];
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(64 * MiB), 2);
    mine[0] = make_segment(page());
    mine[1] = make_segment(page());
    l = limits_of(2 * MiB, pages_of(64 * MiB), 2);
    run_probe(&l, &res);

    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_SKIPPED, ENOSPC);
    cr_expect(strstr(res.acceptance.detail, "2 of 2 segments"), "%s", res.acceptance.detail);
    expect_step(res.round_trip, PROBE_SKIPPED, 0);
    cr_expect_eq(res.segments, 2);
    cr_expect_eq(res.headroom_bytes, 0);
    cr_expect(res.passed);
    leave_checks(mine, 2);
}

/* The kernel defaults (ULONG_MAX - 2^24), and INT64_MAX, the first value no
 * request can test: the size steps are skipped and say why; the round trip
 * still proves segments work. */
Test(probe, unlimited_skips_size_steps)
{
    static const uint64_t values[] = { SIZING_KERNEL_DEFAULT, (uint64_t)INT64_MAX };

    enter_private_ipc();
    cr_expect_eq(read_proc("/proc/sys/kernel/shmall"), SIZING_KERNEL_DEFAULT);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct probe_limits l;
        struct probe_result res;

        set_limits(values[i], SIZING_KERNEL_DEFAULT, SIZING_SHMMNI_DEFAULT);
        l = limits_of(values[i], SIZING_KERNEL_DEFAULT, SIZING_SHMMNI_DEFAULT);
        run_probe(&l, &res);

        expect_step(res.upper_bound, PROBE_SKIPPED, 0);
        cr_expect(strstr(res.upper_bound.detail, "effectively unlimited"), "%s", res.upper_bound.detail);
        expect_step(res.acceptance, PROBE_SKIPPED, 0);
        cr_expect(strstr(res.acceptance.detail, "effectively unlimited"), "%s", res.acceptance.detail);
        expect_step(res.round_trip, PROBE_PASSED, 0);
        cr_expect(res.passed);
        cr_expect_eq(res.headroom_bytes, values[i]);
        assert_only_segments(NULL, 0);
    }
    leave_checks(NULL, 0);
}

/* A shmmax below one page: the round trip uses a shmmax-sized segment,
 * however small. */
Test(probe, tiny_shmmax)
{
    struct probe_limits l;
    struct probe_result res;

    enter_private_ipc();
    set_limits(1024, 16, 16);
    l = limits_of(1024, 16, 16);
    run_probe(&l, &res);
    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_PASSED, 0);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect_eq(res.round_trip.bytes, 1024);

    set_limits(100, 16, 16);
    l = limits_of(100, 16, 16);
    run_probe(&l, &res);
    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    expect_step(res.acceptance, PROBE_PASSED, 0);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect_eq(res.round_trip.bytes, 100);
    cr_expect(res.passed);
    leave_checks(NULL, 0);
}

/* Many probes in a row leave nothing behind. */
Test(probe, repeated_runs_leave_nothing)
{
    struct probe_limits l;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);
    for (int i = 0; i < 50; i++) {
        struct probe_result res;
        cr_assert_eq(probe_run(&l, &res), 0);
        cr_assert(res.passed, "run %d: %s / %s / %s", i, res.upper_bound.detail, res.acceptance.detail,
                  res.round_trip.detail);
    }
    leave_checks(NULL, 0);
}

/* ---- leftovers: what a killed shmprov leaves, and what is not one ---------- */

/* A segment made by a child that exits at once (a creator that is gone),
 * as a probe killed between shmget and IPC_RMID leaves it. uid: the owner
 * the child switches to first, or -1 to stay root. */
static int create_by_dead_process(key_t key, uint64_t bytes, int mode, int uid)
{
    int fds[2];
    pid_t pid;

    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int child_id = -1;
        if (uid < 0 || setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) == 0)
            child_id = shmget(key, (size_t)bytes, IPC_CREAT | IPC_EXCL | SHM_NORESERVE | mode);
        if (write(fds[1], &child_id, sizeof(child_id)) != sizeof(child_id))
            _exit(2);
        _exit(child_id >= 0 ? 0 : 1);
    }
    return child_created_id(pid, fds);
}

/* A live process that created a segment with key and holds on (never
 * attached) until release_holder(). */
struct holder {
    pid_t pid;
    int release_fd;
    int id;
};

static struct holder hold_by_live_process(key_t key, uint64_t bytes)
{
    int ids[2], rel[2];
    struct holder h = { .id = -1 };

    cr_assert_eq(pipe2(ids, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(rel, O_CLOEXEC), 0);
    h.pid = fork();
    cr_assert_geq(h.pid, 0);
    if (h.pid == 0) {
        char c;
        int id = shmget(key, (size_t)bytes, IPC_CREAT | IPC_EXCL | SHM_NORESERVE | 0600);
        close(rel[1]);
        if (write(ids[1], &id, sizeof(id)) != sizeof(id))
            _exit(2);
        _exit(read(rel[0], &c, 1) < 0 ? 3 : 0); /* until the test closes its end */
    }
    close(ids[1]);
    close(rel[0]);
    cr_assert_eq(read(ids[0], &h.id, sizeof(h.id)), (ssize_t)sizeof(h.id));
    close(ids[0]);
    cr_assert_geq(h.id, 0, "the holder could not create its segment");
    h.release_fd = rel[1];
    return h;
}

static void release_holder(struct holder *h)
{
    int status;

    close(h->release_fd);
    cr_assert_eq(waitpid(h->pid, &status, 0), h->pid);
}

static bool segment_exists(int id)
{
    struct shmid_ds ds;

    return shmctl(id, IPC_STAT, &ds) == 0;
}

/* probe_find_leftovers() on the table as it is now, for this euid. */
static size_t find_leftovers(struct probe_leftover *ret, size_t max)
{
    struct shmseg_table *t = NULL;
    size_t n;

    cr_assert_eq(host_read_segments(&t), 0);
    n = probe_find_leftovers(t, geteuid(), ret, max);
    free(t);
    return n;
}

/* The bug: a probe killed at IPC_RMID left shmmax bytes, which is all of
 * shmall. The probe alone only finds no room; removing the leftover first
 * (what apply does) gives the room back, and the probe then passes and
 * leaves nothing. */
Test(probe_leftovers, dead_creators_segment_is_found_and_removed)
{
    const uint64_t shmmax = 2 * MiB, shmall = pages_of(shmmax);
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    struct probe_result res;
    struct probe_limits l;
    int id;

    enter_private_ipc();
    set_limits(shmmax, shmall, 16);
    l = limits_of(shmmax, shmall, 16);
    id = create_by_dead_process(SHMPROV_PROBE_KEY, shmmax, 0600, -1);

    cr_assert_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 1);
    cr_expect_eq(found[0].seg.id, id);
    cr_expect_eq(found[0].seg.size, shmmax);
    cr_expect_eq(found[0].seg.key, SHMPROV_PROBE_KEY);

    /* Left in place, it takes the whole of shmall, and the probe (which
     * never removes anything itself) says whose the key is. */
    run_probe(&l, &res);
    expect_step(res.acceptance, PROBE_SKIPPED, ENOSPC);
    cr_expect(strstr(res.key_note, "a killed shmprov's"), "%s", res.key_note);
    cr_expect(segment_exists(id), "probe_run() removed a segment");

    cr_assert_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 1);
    cr_expect_eq(found[0].outcome, ORPHAN_REMOVED, "%s", found[0].why);
    cr_expect_eq(found[0].seg.id, id);
    cr_expect_not(segment_exists(id));
    cr_expect_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 0, "nothing left to remove");

    run_probe(&l, &res);
    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    cr_expect_eq(res.acceptance.status, PROBE_PASSED, "%s", res.acceptance.detail);
    expect_step(res.round_trip, PROBE_PASSED, 0);
    cr_expect_str_eq(res.key_note, "");
    leave_checks(NULL, 0);
}

/* The key held by a live process, first as its creator, then (creator gone)
 * by a live attachment: not a leftover, never removed; the probe works
 * around it with private segments, names the holder, and leaves nothing. */
Test(probe_leftovers, live_holder_is_never_touched)
{
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    struct probe_result res;
    struct probe_limits l;
    struct holder h;
    char pid_text[32];
    void *p;
    int id;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);

    h = hold_by_live_process(SHMPROV_PROBE_KEY, 1 * MiB);
    cr_expect_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 0, "a live creator's segment");
    cr_expect_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 0);
    cr_expect(segment_exists(h.id));
    run_probe(&l, &res);
    cr_expect(res.passed, "%s / %s / %s", res.upper_bound.detail, res.acceptance.detail, res.round_trip.detail);
    expect_step(res.upper_bound, PROBE_PASSED, EINVAL);
    (void)snprintf(pid_text, sizeof(pid_text), "creator pid %ld alive", (long)h.pid);
    cr_expect(strstr(res.key_note, pid_text) && strstr(res.key_note, "not shmprov's"), "%s", res.key_note);
    assert_only_segments(&h.id, 1);

    /* Its creator gone but attached by this live process. */
    p = shmat(h.id, NULL, SHM_RDONLY);
    cr_assert_neq(p, (void *)-1);
    release_holder(&h);
    cr_expect_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 0, "attached by a live process");
    cr_expect_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 0);
    run_probe(&l, &res);
    cr_expect(res.passed);
    cr_expect(strstr(res.key_note, "1 attached"), "%s", res.key_note);
    assert_only_segments(&h.id, 1);

    /* Detached: the last user (this process) lives. */
    cr_assert_eq(shmdt(p), 0);
    cr_expect_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 0);
    cr_expect(segment_exists(h.id));
    id = h.id;
    leave_checks(&id, 1);
}

/* Only the probe's key, mode and owner make a leftover: an orphan with any
 * other key, an IPC_PRIVATE one, the probe's key with other permissions or
 * another owner are all left alone. */
Test(probe_leftovers, other_segments_are_never_touched)
{
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    int mine[3];

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(64 * MiB), 16);
    mine[0] = create_by_dead_process(0x5150, 1 * MiB, 0600, -1);
    mine[1] = create_by_dead_process(IPC_PRIVATE, 1 * MiB, 0600, -1);
    /* One key names one segment: the probe key's variants one at a time. */
    mine[2] = create_by_dead_process(SHMPROV_PROBE_KEY, 1 * MiB, 0644, -1);
    cr_expect_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 0, "mode 0644");
    cr_expect_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 0);
    assert_only_segments(mine, 3);
    cr_assert_eq(shmctl(mine[2], IPC_RMID, NULL), 0);
    mine[2] = create_by_dead_process(SHMPROV_PROBE_KEY, 1 * MiB, 0600, 65534);
    cr_expect_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 0, "another user's");
    cr_expect_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 0);
    for (int i = 0; i < 3; i++)
        cr_expect(segment_exists(mine[i]), "segment %d was removed", mine[i]);

    /* Single rows, for what this test cannot make the kernel show (a
     * creator in another pid namespace: pid 0). */
    {
        struct shmseg s = { .key = SHMPROV_PROBE_KEY, .id = 1, .mode = 0600, .size = 4096, .cpid = INT32_MAX,
                            .uid = (uint32_t)geteuid(), .cuid = (uint32_t)geteuid() };
        cr_expect(probe_is_leftover(&s, geteuid()), "a pid that cannot exist is gone");
        cr_expect_not(probe_is_leftover(&s, geteuid() + 1), "not this euid's");
        s.mode = 0600 | SHMSEG_MODE_DEST;
        cr_expect_not(probe_is_leftover(&s, geteuid()));
        s.mode = 0600;
        s.nattch = 1;
        cr_expect_not(probe_is_leftover(&s, geteuid()));
        s.nattch = 0;
        s.cuid = 65534;
        cr_expect_not(probe_is_leftover(&s, geteuid()), "created by another user");
        s.cuid = s.uid;
        s.cpid = getpid();
        cr_expect_not(probe_is_leftover(&s, geteuid()), "its creator lives");
        s.cpid = 0;
        cr_expect_not(probe_is_leftover(&s, geteuid()), "a creator in another pid namespace counts as alive");
    }
    leave_checks(mine, 3);
}

/* A profile that lists the key as persistent says it is another
 * program's: the probe then never asks for it (no note about its holder),
 * proves the limits with private segments and leaves the segment alone. */
Test(probe_leftovers, persistent_key_is_never_used)
{
    struct probe_result res;
    struct probe_limits l;
    int id;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);
    id = create_by_dead_process(SHMPROV_PROBE_KEY, 4096, 0600, -1);
    run_probe(&l, &res);
    cr_expect(res.passed);
    cr_expect_neq(res.key_note[0], '\0', "without the flag the probe asks for the key and finds it taken");
    l.key_persistent = true;
    run_probe(&l, &res);
    cr_expect(res.passed);
    cr_expect_str_eq(res.key_note, "", "the key was asked for");
    leave_checks(&id, 1);
}

/* Many probes in a row: the key was free each time, so every segment
 * carried it, and none survives. */
Test(probe_leftovers, probe_leaves_nothing_and_uses_the_key)
{
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    struct probe_limits l;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);
    for (int i = 0; i < 20; i++) {
        struct probe_result res;
        run_probe(&l, &res);
        cr_assert(res.passed);
        cr_assert_str_eq(res.key_note, "", "run %d found the key taken", i);
    }
    cr_expect_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 0);
    leave_checks(NULL, 0);
}

#if defined(__NR_shmctl) && (defined(__x86_64__) || defined(__aarch64__))
#if defined(__x86_64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#else
#define TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* Makes every shmctl(IPC_RMID) of this process fail with EPERM (the "kernel
 * or LSM surprise" the probe cannot rule out). IPC_64 masked off: some C
 * libraries add it to cmd. */
static int refuse_ipc_rmid(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TEST_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_shmctl, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])), /* low half: little endian */
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~0x100u),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPC_RMID, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
}

/* IPC_RMID fails inside the probe: the step fails and names the segment, as
 * before; the segment carries the key, so once that shmprov is gone it is a
 * leftover the next apply removes. The probe runs in a child: the filter
 * cannot be taken off again. */
Test(probe_leftovers, failed_ipc_rmid_fails_the_probe_and_leaves_a_leftover)
{
    struct probe_leftover found[PROBE_LEFTOVERS_MAX];
    struct probe_limits l;
    struct probe_result res;
    int fds[2], status;
    char want[64];
    pid_t pid;

    enter_private_ipc();
    set_limits(2 * MiB, pages_of(8 * MiB), 16);
    l = limits_of(2 * MiB, pages_of(8 * MiB), 16);
    l.skip_round_trip = true; /* one segment, the acceptance's */
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int r = refuse_ipc_rmid();
        if (r == 0)
            r = probe_run(&l, &res);
        if (r < 0 || write(fds[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    cr_assert_eq(read(fds[0], &res, sizeof(res)), (ssize_t)sizeof(res), "the probing child failed");
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);

    cr_expect_not(res.passed);
    expect_step(res.acceptance, PROBE_FAILED, EPERM);
    cr_log_info("acceptance: %s", res.acceptance.detail);
    cr_assert_eq(find_leftovers(found, PROBE_LEFTOVERS_MAX), 1, "the segment IPC_RMID could not remove");
    (void)snprintf(want, sizeof(want), "segment %d (%" PRIu64 " bytes) was created but could not be removed",
                   (int)found[0].seg.id, 2 * MiB);
    cr_expect(strstr(res.acceptance.detail, want), "%s", res.acceptance.detail);
    cr_expect(strstr(res.acceptance.detail, "the next 'shmprov apply' removes it"), "%s", res.acceptance.detail);
    cr_expect_eq(found[0].seg.cpid, pid);
    cr_expect_eq(found[0].seg.size, 2 * MiB);

    cr_assert_eq(probe_remove_leftovers(found, PROBE_LEFTOVERS_MAX), 1);
    cr_expect_eq(found[0].outcome, ORPHAN_REMOVED, "%s", found[0].why);
    leave_checks(NULL, 0);
}
#endif

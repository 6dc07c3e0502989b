#include "probe.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "kernel.h"
#include "sizing.h"

/* IPC_EXCL: a segment that already holds SHMPROV_PROBE_KEY is never opened,
 * whoever's it is (with IPC_PRIVATE it changes nothing). SHM_NORESERVE
 * keeps the kernel from committing swap for a segment that is never
 * touched, so proving a 64 GiB limit costs nothing (strict overcommit,
 * vm.overcommit_memory = 2, ignores it: see the acceptance). */
#define PROBE_SHM_PERMS 0600
#define PROBE_SHM_FLAGS (IPC_CREAT | IPC_EXCL | PROBE_SHM_PERMS | SHM_NORESERVE)

#define PATTERN_MAGIC "shmprov probe pattern"
#define ACK_MAGIC "shmprov probe ack"

/* What the agent writes at the start of the round-trip segment. Only 8-byte
 * members, so there is no padding and the struct compares with memcmp. */
struct rt_header {
    char magic[24];
    uint64_t counter; /* which round trip of this process */
    uint64_t seed;    /* of the bytes that fill the rest of the segment */
    uint64_t size;
    int64_t pid; /* the agent's */
};

/* What the child writes back at the end of the segment. */
struct rt_ack {
    char magic[24];
    uint64_t counter; /* copied from the header the child verified */
    int64_t pid;      /* the child's own */
    int64_t err;      /* errno of the child's failing call, 0 on success */
};

/* How far the round-trip child got: its exit status. */
enum child_exit {
    CHILD_OK = 0,
    CHILD_SETUP = 10,
    CHILD_ATTACH = 11,
    CHILD_DETACH_INHERITED = 12,
    CHILD_MISMATCH = 13,
    CHILD_DETACH = 14,
};

/* Result of one create-and-remove attempt. */
struct attempt {
    bool created;
    bool keyed; /* under SHMPROV_PROBE_KEY, not IPC_PRIVATE */
    int create_err; /* errno of shmget when !created */
    int shmid;
    int remove_err; /* errno of IPC_RMID when created, 0 when removed */
};

/* Numbers the pattern of each round trip, so a stale segment's bytes can
 * never pass for this run's. */
static uint64_t round_trips;

/* For this probe_run(): whether SHMPROV_PROBE_KEY may be used, and
 * whether another segment was found holding it (then IPC_PRIVATE). */
static bool key_usable, key_taken;

const char *probe_status_name(enum probe_step_status status)
{
    switch (status) {
    case PROBE_PASSED:
        return "passed";
    case PROBE_FAILED:
        return "failed";
    case PROBE_SKIPPED:
        return "skipped";
    }
    return "unknown";
}

bool probe_shmmax_testable(uint64_t shmmax)
{
    uint64_t limit = (uint64_t)SIZE_MAX < (uint64_t)INT64_MAX ? (uint64_t)SIZE_MAX : (uint64_t)INT64_MAX;

    return shmmax < limit;
}

static uint64_t pages_for(uint64_t bytes, uint64_t page_size)
{
    return bytes / page_size + (bytes % page_size != 0);
}

uint64_t probe_headroom(const struct probe_limits *limits, uint64_t shm_tot_pages, uint64_t segments)
{
    enum sizing_key_id limited_by;

    return sizing_headroom(limits->shmmax, limits->shmall, limits->shmmni, limits->page_size, shm_tot_pages,
                           segments, &limited_by);
}

/* The kernel's own test in newseg(): a free id, and shm_tot plus the
 * segment's whole pages not above shmall. */
static bool fits(const struct probe_limits *l, const struct kernel_shm_usage *u, uint64_t bytes)
{
    if (u->segments >= l->shmmni || u->pages > l->shmall)
        return false;
    return pages_for(bytes, l->page_size) <= l->shmall - u->pages;
}

static void step_set(struct probe_step *step, enum probe_step_status status, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void step_set(struct probe_step *step, enum probe_step_status status, int err, const char *fmt, ...)
{
    va_list ap;

    step->status = status;
    step->err = err;
    va_start(ap, fmt);
    (void)vsnprintf(step->detail, sizeof(step->detail), fmt, ap);
    va_end(ap);
}

/* A segment exists without being marked for removal only between shmget and
 * IPC_RMID. With every catchable signal blocked there, SIGTERM, SIGINT,
 * SIGHUP and the rest are delivered after IPC_RMID, when the segment can no
 * longer outlive the agent; only SIGKILL (or a crash) can land inside. */
static int signals_block(sigset_t *ret_saved)
{
    sigset_t all;

    sigfillset(&all);
    if (sigprocmask(SIG_BLOCK, &all, ret_saved) < 0)
        return -errno;
    return 0;
}

static void signals_restore(const sigset_t *saved)
{
    /* Cannot fail with a set sigprocmask itself returned. Signals that
     * arrived in the window are delivered here. */
    (void)sigprocmask(SIG_SETMASK, saved, NULL);
}

/* shmget under SHMPROV_PROBE_KEY; when another segment holds the key (the
 * kernel answers EEXIST before it looks at the size), a private segment
 * instead, so the step still tests the limits. Called with signals blocked. */
static int create_segment(size_t size, bool *ret_keyed)
{
    int id;

    *ret_keyed = false;
    if (key_usable) {
        id = shmget(SHMPROV_PROBE_KEY, size, PROBE_SHM_FLAGS);
        *ret_keyed = id >= 0;
        if (id >= 0 || errno != EEXIST)
            return id;
        key_taken = true;
    }
    return shmget(IPC_PRIVATE, size, PROBE_SHM_FLAGS);
}

/* Creates a segment of size bytes and removes it at once, never attaching
 * it: the upper bound and the acceptance only ask whether the kernel
 * accepts the size. Returns <0 only when signals could not be blocked. */
static int attempt_create(uint64_t size, struct attempt *ret)
{
    struct attempt a = { .shmid = -1 };
    sigset_t saved;
    int r;

    r = signals_block(&saved);
    if (r < 0)
        return r;
    a.shmid = create_segment((size_t)size, &a.keyed);
    if (a.shmid < 0) {
        a.create_err = errno;
    } else {
        a.created = true;
        if (shmctl(a.shmid, IPC_RMID, NULL) < 0)
            a.remove_err = errno;
    }
    signals_restore(&saved);
    *ret = a;
    return 0;
}

/* IPC_RMID on a segment we created cannot fail short of a kernel or LSM
 * surprise; if it does, the operator must know which id to remove. Under
 * the probe's key it is a leftover once this process is gone. */
static void step_leaked(struct probe_step *step, const struct attempt *a, uint64_t size)
{
    step_set(step, PROBE_FAILED, a->remove_err,
             "segment %d (%" PRIu64 " bytes) was created but could not be removed (%s): %sremove it with 'ipcrm -m %d'",
             a->shmid, size, strerror(a->remove_err),
             a->keyed ? "the next 'shmprov apply' removes it, or " : "", a->shmid);
}

static void step_no_room(struct probe_step *step, const struct probe_limits *l, const struct kernel_shm_usage *u,
                         uint64_t size, int err)
{
    step_set(step, PROBE_SKIPPED, err,
             "no room for %" PRIu64 " bytes now: %" PRIu64 " of %" PRIu64 " pages and %" PRIu64 " of %" PRIu64
             " segments in use; the largest segment that fits now is %" PRIu64 " bytes",
             size, u->pages, l->shmall, u->segments, l->shmmni, probe_headroom(l, u->pages, u->segments));
}

/* Step 1. One byte more than shmmax must be refused with EINVAL: newseg()
 * checks the size against shmmax before anything else, so EINVAL proves the
 * limit, and any other answer (even ENOSPC or ENOMEM) means the size got
 * past that check, i.e. the limit in effect is higher. */
static int step_upper_bound(const struct probe_limits *l, struct probe_step *step)
{
    struct attempt a;
    uint64_t size;
    int r;

    if (!probe_shmmax_testable(l->shmmax)) {
        step_set(step, PROBE_SKIPPED, 0,
                 "kernel.shmmax %" PRIu64 " is effectively unlimited: no request of one byte more can test it",
                 l->shmmax);
        return 0;
    }
    size = l->shmmax + 1;
    step->bytes = size;
    r = attempt_create(size, &a);
    if (r < 0)
        return r;

    if (a.created && a.remove_err)
        step_leaked(step, &a, size);
    else if (a.created)
        step_set(step, PROBE_FAILED, 0,
                 "a segment of %" PRIu64 " bytes was created (and removed): kernel.shmmax %" PRIu64
                 " is not in effect",
                 size, l->shmmax);
    else if (a.create_err == EINVAL)
        step_set(step, PROBE_PASSED, EINVAL, "%" PRIu64 " bytes refused with EINVAL: kernel.shmmax %" PRIu64
                 " is in effect", size, l->shmmax);
    else if (a.create_err == ENOSPC || a.create_err == ENOMEM || a.create_err == ENFILE)
        step_set(step, PROBE_FAILED, a.create_err,
                 "%" PRIu64 " bytes got past the size check and failed later (%s): kernel.shmmax in effect is"
                 " above %" PRIu64,
                 size, strerror(a.create_err), l->shmmax);
    else
        step_set(step, PROBE_FAILED, a.create_err, "shmget of %" PRIu64 " bytes failed unexpectedly: %s", size,
                 strerror(a.create_err));
    return 0;
}

/* Step 2. A segment of exactly shmmax bytes must be accepted when current
 * usage leaves room for it. When it does not, the probe reports how much
 * room there is rather than failing (other programs' segments are not the
 * limits' fault), but still makes the request: the kernel checks the size
 * against shmmax before it looks for room, so EINVAL still shows a shmmax
 * below the one we were told, and a success where there is no room shows a
 * shmall or shmmni above it. */
static int step_acceptance(const struct probe_limits *l, struct probe_result *res)
{
    struct probe_step *step = &res->acceptance;
    struct attempt a;
    struct kernel_shm_usage u = { 0 };
    bool room;
    int r;

    r = kernel_read_shm_usage(&u);
    if (r < 0)
        return r;
    res->shm_tot_pages = u.pages;
    res->segments = u.segments;
    res->headroom_bytes = probe_headroom(l, u.pages, u.segments);

    if (!probe_shmmax_testable(l->shmmax)) {
        step_set(step, PROBE_SKIPPED, 0,
                 "kernel.shmmax %" PRIu64 " is effectively unlimited: no segment of that size can be requested",
                 l->shmmax);
        return 0;
    }
    if (l->shmmax == 0) {
        step_set(step, PROBE_SKIPPED, 0, "kernel.shmmax is 0: no segment can be created at all");
        return 0;
    }

    room = fits(l, &u, l->shmmax);
    step->bytes = l->shmmax;
    r = attempt_create(l->shmmax, &a);
    if (r < 0)
        return r;

    /* Other programs may have taken or freed room between our look and our
     * request: when the kernel's answer disagrees with the look, look again
     * before blaming the limits. */
    if ((a.created && !room) || (!a.created && a.create_err == ENOSPC && room)) {
        r = kernel_read_shm_usage(&u);
        if (r < 0)
            return r;
        res->shm_tot_pages = u.pages;
        res->segments = u.segments;
        res->headroom_bytes = probe_headroom(l, u.pages, u.segments);
        room = fits(l, &u, l->shmmax);
    }

    if (a.created && a.remove_err)
        step_leaked(step, &a, l->shmmax);
    else if (a.created && room)
        step_set(step, PROBE_PASSED, 0, "a segment of %" PRIu64 " bytes was created and removed at once, unattached",
                 l->shmmax);
    else if (a.created)
        step_set(step, PROBE_FAILED, 0,
                 "a segment of %" PRIu64 " bytes was created (and removed) although %" PRIu64 " of %" PRIu64
                 " pages and %" PRIu64 " of %" PRIu64 " segments are in use: kernel.shmall or kernel.shmmni in"
                 " effect is higher",
                 l->shmmax, u.pages, l->shmall, u.segments, l->shmmni);
    else if (a.create_err == EINVAL)
        step_set(step, PROBE_FAILED, EINVAL,
                 "%" PRIu64 " bytes refused with EINVAL: kernel.shmmax in effect is below %" PRIu64, l->shmmax,
                 l->shmmax);
    else if (a.create_err == ENOSPC && room)
        step_set(step, PROBE_FAILED, ENOSPC,
                 "%" PRIu64 " bytes refused with ENOSPC although %" PRIu64 " of %" PRIu64 " pages and %" PRIu64
                 " of %" PRIu64 " segments are in use: kernel.shmall or kernel.shmmni in effect is lower",
                 l->shmmax, u.pages, l->shmall, u.segments, l->shmmni);
    else if (a.create_err == ENOSPC || (a.create_err == ENOMEM && l->overcommit_memory == 2 && !room))
        step_no_room(step, l, &u, l->shmmax, a.create_err);
    else if (a.create_err == ENOMEM && l->overcommit_memory == 2)
        /* Strict overcommit ignores SHM_NORESERVE and commits the whole
         * size now. ENOMEM comes after the shmmax and shmall checks in
         * newseg(), so the limits themselves admitted the size. */
        step_set(step, PROBE_PASSED, ENOMEM,
                 "%" PRIu64 " bytes passed kernel.shmmax and kernel.shmall but got ENOMEM: vm.overcommit_memory = 2"
                 " commits the whole size and there is not that much memory to commit now",
                 l->shmmax);
    else
        step_set(step, PROBE_FAILED, a.create_err, "shmget of %" PRIu64 " bytes failed: %s%s", l->shmmax,
                 strerror(a.create_err),
                 a.create_err == ENOMEM ? " (vm.overcommit_memory is not 2, so SHM_NORESERVE should have applied)"
                                        : "");
    return 0;
}

/* ---- step 3: round trip ------------------------------------------------- */

static uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* The acknowledgement sits at the end of the segment, 8-byte aligned. */
static size_t ack_offset(size_t size)
{
    return (size - sizeof(struct rt_ack)) & ~(size_t)7;
}

static struct rt_ack *ack_of(void *seg, size_t size)
{
    return (struct rt_ack *)(void *)((unsigned char *)seg + ack_offset(size));
}

/* Header, then pseudo-random bytes up to the acknowledgement, so every byte
 * of the page is checked, not only a string at its start. */
static void pattern_write(unsigned char *seg, size_t size, const struct rt_header *hdr)
{
    uint64_t state = hdr->seed;
    size_t end = ack_offset(size);

    memcpy(seg, hdr, sizeof(*hdr));
    for (size_t i = sizeof(*hdr); i < end; i++)
        seg[i] = (unsigned char)xorshift64(&state);
    memset(seg + end, 0, size - end);
}

static bool pattern_matches(const unsigned char *seg, size_t size, const struct rt_header *hdr)
{
    uint64_t state = hdr->seed;
    size_t end = ack_offset(size);

    if (memcmp(seg, hdr, sizeof(*hdr)) != 0)
        return false;
    for (size_t i = sizeof(*hdr); i < end; i++)
        if (seg[i] != (unsigned char)xorshift64(&state))
            return false;
    return true;
}

/* Runs in the forked child, which only makes system calls and compares
 * memory until _exit(): the agent's state (stdio, handlers, other threads'
 * locks) is not safe to touch after fork(). expect is the child's copy of
 * what the agent wrote, so nothing read from the segment is trusted. */
static int child_main(int shmid, void *inherited, size_t size, const struct rt_header *expect, pid_t agent)
{
    unsigned char *own;
    struct rt_ack *ack;

    /* If the agent dies, so must the child: while it is attached, the
     * segment (already marked for removal) lives on. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != agent)
        return CHILD_SETUP;

    /* fork() copied the agent's attachment; the proof is that a second,
     * independent shmat of the same id, on a segment already marked for
     * removal (Linux allows it while it is still attached), sees the
     * agent's bytes. The inherited mapping is still there to report
     * through if that fails. */
    own = shmat(shmid, NULL, 0);
    if (own == (void *)-1) {
        ack_of(inherited, size)->err = errno;
        return CHILD_ATTACH;
    }
    if (shmdt(inherited) < 0) {
        ack_of(own, size)->err = errno;
        return CHILD_DETACH_INHERITED;
    }
    if (!pattern_matches(own, size, expect))
        return CHILD_MISMATCH;

    ack = ack_of(own, size);
    memcpy(ack->magic, ACK_MAGIC, sizeof(ACK_MAGIC));
    ack->counter = expect->counter;
    ack->pid = getpid();
    ack->err = 0;
    if (shmdt(own) < 0)
        return CHILD_DETACH;
    return CHILD_OK;
}

static const char *child_exit_text(int code)
{
    switch (code) {
    case CHILD_SETUP:
        return "could not tie its life to the agent's (prctl PR_SET_PDEATHSIG)";
    case CHILD_ATTACH:
        return "could not attach the segment itself";
    case CHILD_DETACH_INHERITED:
        return "could not detach the attachment fork() gave it";
    case CHILD_MISMATCH:
        return "read bytes that differ from the agent's pattern";
    case CHILD_DETACH:
        return "could not detach the segment";
    default:
        return "exited with an unknown status";
    }
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps until the child exits or timeout_ms pass: a pidfd becomes
 * readable when its process exits (Linux 5.3), so no polling delay and no
 * signal state is touched. Returns 0 either way; -ENOSYS without pidfds. */
static int wait_exit_pidfd(pid_t pid, unsigned timeout_ms)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd p;

    if (fd < 0)
        return -errno;
    p = (struct pollfd){ .fd = fd, .events = POLLIN };
    while (poll(&p, 1, (int)timeout_ms) < 0 && errno == EINTR)
        ;
    close(fd);
    return 0;
#else
    (void)pid;
    (void)timeout_ms;
    return -ENOSYS;
#endif
}

/* Waits for the child at most timeout_ms, then kills it. A pidfd when the
 * kernel has them; else polling with WNOHANG rather than alarm() or a
 * SIGCHLD handler, which would take over process-wide signal state the rest
 * of the agent may use. The child does a few system calls, so polls start
 * at 0.1 ms and never sleep over 1.6 ms. */
static int wait_child(pid_t pid, unsigned timeout_ms, int *ret_status, bool *ret_timed_out)
{
    struct timespec pause = { .tv_sec = 0, .tv_nsec = 100000 };
    uint64_t deadline = monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
    bool timed_out = false;
    int status = 0;

    (void)wait_exit_pidfd(pid, timeout_ms); /* then reap (or poll) below */
    for (;;) {
        pid_t w = waitpid(pid, &status, timed_out ? 0 : WNOHANG);

        if (w == pid)
            break;
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (monotonic_ns() >= deadline) {
            /* SIGKILL ends the child and with it its attachment; the
             * blocking wait that follows then returns at once. */
            (void)kill(pid, SIGKILL);
            timed_out = true;
            continue;
        }
        (void)nanosleep(&pause, NULL);
        if (pause.tv_nsec < 1000000)
            pause.tv_nsec *= 2;
    }
    *ret_status = status;
    *ret_timed_out = timed_out;
    return 0;
}

/* Checks what the child reported: its exit status and, on success, the
 * acknowledgement it wrote into the segment for this very round trip. */
static void judge_child(struct probe_step *step, void *seg, size_t size, const struct rt_header *hdr, pid_t pid,
                        int status, bool timed_out)
{
    const struct rt_ack *ack = ack_of(seg, size);
    int code;

    if (timed_out) {
        step_set(step, PROBE_FAILED, ETIMEDOUT, "the child did not finish within %u ms and was killed",
                 (unsigned)PROBE_CHILD_TIMEOUT_MS);
        return;
    }
    if (WIFSIGNALED(status)) {
        step_set(step, PROBE_FAILED, 0, "the child was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return;
    }
    code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != CHILD_OK) {
        int err = (int)ack->err;
        step_set(step, PROBE_FAILED, err, "the child %s%s%s", child_exit_text(code), err ? ": " : "",
                 err ? strerror(err) : "");
        return;
    }
    if (memcmp(ack->magic, ACK_MAGIC, sizeof(ACK_MAGIC)) != 0 || ack->counter != hdr->counter ||
        ack->pid != (int64_t)pid) {
        step_set(step, PROBE_FAILED, 0, "the child exited successfully but its acknowledgement is not in the segment");
        return;
    }
    step_set(step, PROBE_PASSED, 0,
             "child %ld attached the segment (already marked for removal) itself, verified the agent's %zu bytes"
             " and acknowledged",
             (long)pid, size);
}

/* Step 3, the sizing guide's usage example: one page written by the agent
 * and read back by another process through its own attachment. */
static int step_round_trip(const struct probe_limits *l, struct probe_step *step)
{
    struct rt_header hdr;
    struct kernel_shm_usage u = { 0 };
    sigset_t saved;
    unsigned char *seg = (void *)-1;
    uint64_t size64 = l->shmmax < l->page_size ? l->shmmax : l->page_size;
    size_t size;
    int shmid = -1, create_err = 0, attach_err = 0, remove_err = 0, status = 0, r;
    bool timed_out = false, keyed = false;
    pid_t agent = getpid(), pid;

    if (size64 < PROBE_ROUND_TRIP_MIN_BYTES) {
        step_set(step, PROBE_SKIPPED, 0,
                 "kernel.shmmax %" PRIu64 " is below the %d bytes the round trip needs", l->shmmax,
                 PROBE_ROUND_TRIP_MIN_BYTES);
        return 0;
    }
    size = (size_t)size64;
    r = kernel_read_shm_usage(&u);
    if (r < 0)
        return r;
    if (!fits(l, &u, size)) {
        step_no_room(step, l, &u, size, 0);
        return 0;
    }
    step->bytes = size;

    /* Attach before IPC_RMID: a segment marked for removal with no
     * attachment is destroyed at once. After IPC_RMID the segment lives
     * exactly as long as some process is attached to it. */
    r = signals_block(&saved);
    if (r < 0)
        return r;
    shmid = create_segment(size, &keyed);
    if (shmid < 0) {
        create_err = errno;
    } else {
        seg = shmat(shmid, NULL, 0);
        if (seg == (void *)-1)
            attach_err = errno;
        if (shmctl(shmid, IPC_RMID, NULL) < 0)
            remove_err = errno;
    }
    signals_restore(&saved);

    if (create_err == ENOSPC && kernel_read_shm_usage(&u) == 0 && !fits(l, &u, size)) {
        step_no_room(step, l, &u, size, ENOSPC);
        r = 0;
        goto out;
    }
    if (create_err) {
        step_set(step, PROBE_FAILED, create_err, "shmget of %zu bytes failed: %s", size, strerror(create_err));
        r = 0;
        goto out;
    }
    if (remove_err) {
        struct attempt a = { .created = true, .keyed = keyed, .shmid = shmid, .remove_err = remove_err };
        step_leaked(step, &a, size);
        r = 0;
        goto out;
    }
    if (attach_err) {
        step_set(step, PROBE_FAILED, attach_err, "shmat of segment %d failed: %s", shmid, strerror(attach_err));
        r = 0;
        goto out;
    }

    memset(&hdr, 0, sizeof(hdr));
    memcpy(hdr.magic, PATTERN_MAGIC, sizeof(PATTERN_MAGIC));
    hdr.counter = ++round_trips;
    hdr.pid = agent;
    hdr.size = size;
    hdr.seed = (monotonic_ns() ^ ((uint64_t)hdr.pid << 32) ^ hdr.counter) | 1; /* xorshift needs non-zero */
    pattern_write(seg, size, &hdr);

    /* The child starts with every catchable signal blocked and keeps them
     * so: it must never run the agent's signal handlers. The agent's own
     * mask is restored right after fork(). */
    r = signals_block(&saved);
    if (r < 0)
        goto out;
    pid = fork();
    if (pid == 0)
        _exit(child_main(shmid, seg, size, &hdr, agent));
    if (pid < 0)
        create_err = errno;
    signals_restore(&saved);
    if (pid < 0) {
        step_set(step, PROBE_FAILED, create_err, "fork failed: %s", strerror(create_err));
        r = 0;
        goto out;
    }

    r = wait_child(pid, PROBE_CHILD_TIMEOUT_MS, &status, &timed_out);
    if (r < 0) {
        step_set(step, PROBE_FAILED, -r, "cannot wait for the child %ld: %s (is SIGCHLD ignored?)", (long)pid,
                 strerror(-r));
        r = 0;
        goto out;
    }
    judge_child(step, seg, size, &hdr, pid, status, timed_out);
    r = 0;
out:
    /* The last detach destroys the segment, already marked for removal. */
    if (seg != (void *)-1 && shmdt(seg) < 0 && step->status == PROBE_PASSED) {
        int err = errno;
        step_set(step, PROBE_FAILED, err, "shmdt of segment %d failed: %s", shmid, strerror(err));
    }
    return r;
}

/* Whose SHMPROV_PROBE_KEY is, from /proc/sysvipc/shm: readable whatever
 * the segment's permissions, unlike IPC_STAT. */
static void describe_key_holder(char *buf, size_t len)
{
    struct shmseg_table *t = NULL;
    const struct shmseg *h = NULL;

    if (host_read_segments(&t) == 0)
        for (size_t i = 0; i < t->count && !h; i++)
            if (t->items[i].key == SHMPROV_PROBE_KEY)
                h = &t->items[i];
    if (!h)
        (void)snprintf(buf, len, "key 0x%08x was held by another segment (gone since): this probe used private "
                       "segments instead", (unsigned)SHMPROV_PROBE_KEY);
    else
        (void)snprintf(buf, len, "key 0x%08x is held by segment %" PRId32 " (%" PRIu64 " bytes, uid %" PRIu32
                       ", creator pid %" PRId64 " %s, %" PRIu64 " attached), %s: left alone; this probe used "
                       "private segments instead", (unsigned)SHMPROV_PROBE_KEY, h->id, h->size, h->uid, h->cpid,
                       orphans_pid_state_name(orphans_pid_state(h->cpid, false, h)), h->nattch,
                       h->cpid == (int64_t)getpid() ? "this shmprov's own (its IPC_RMID failed)"
                       : probe_is_leftover(h, geteuid()) ? "a killed shmprov's ('shmprov apply' removes it)"
                                                         : "not shmprov's");
    free(t);
}

int probe_run(const struct probe_limits *limits, struct probe_result *ret)
{
    struct probe_result res;
    long page = sysconf(_SC_PAGESIZE);
    int r;

    /* Every page count below is in the kernel's pages: a caller's other
     * page size would make the room arithmetic wrong. */
    if (!limits || !ret || page <= 0 || limits->page_size != (uint64_t)page)
        return -EINVAL;
    /* A step left as it starts here is a failure, never a silent pass. */
    memset(&res, 0, sizeof(res));
    step_set(&res.upper_bound, PROBE_FAILED, 0, "not run");
    step_set(&res.acceptance, PROBE_FAILED, 0, "not run");
    step_set(&res.round_trip, PROBE_FAILED, 0, "not run");
    key_usable = !limits->key_persistent;
    key_taken = false;

    r = step_upper_bound(limits, &res.upper_bound);
    if (r < 0)
        return r;
    r = step_acceptance(limits, &res);
    if (r < 0)
        return r;
    if (limits->skip_round_trip) {
        step_set(&res.round_trip, PROBE_SKIPPED, 0,
                 "not needed: nothing changed since it last passed (it proves attaching and sharing, "
                 "which no limit affects, at the cost of a fork)");
    } else {
        r = step_round_trip(limits, &res.round_trip);
        if (r < 0)
            return r;
    }

    res.passed = res.upper_bound.status != PROBE_FAILED && res.acceptance.status != PROBE_FAILED &&
                 res.round_trip.status != PROBE_FAILED;
    if (key_taken)
        describe_key_holder(res.key_note, sizeof(res.key_note));
    *ret = res;
    return 0;
}

/* ---- leftovers ------------------------------------------------------------ */

bool probe_is_leftover(const struct shmseg *s, uid_t euid)
{
    struct orphans_verdict v;

    /* Everything the probe sets when it creates one: its key, its mode,
     * and the effective uid as owner and creator. */
    if (s->key != SHMPROV_PROBE_KEY || (s->mode & 0777) != PROBE_SHM_PERMS || s->uid != (uint32_t)euid ||
        s->cuid != (uint32_t)euid)
        return false;
    orphans_classify(s, NULL, 0, &v);
    return v.candidate;
}

bool probe_key_persistent(const uint32_t *keys, size_t nkeys)
{
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i] == SHMPROV_PROBE_KEY)
            return true;
    return false;
}

size_t probe_find_leftovers(const struct shmseg_table *t, uid_t euid, struct probe_leftover *ret, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < t->count; i++) {
        if (!probe_is_leftover(&t->items[i], euid))
            continue;
        if (n < max)
            ret[n] = (struct probe_leftover){ .seg = t->items[i], .outcome = ORPHAN_CHANGED };
        n++;
    }
    return n;
}

int probe_remove_leftovers(struct probe_leftover *ret, size_t max)
{
    struct shmseg_table *t = NULL;
    size_t n;
    int r;

    /* The common case in one system call: no segment holds the key, so
     * there is no leftover, and no table to read at every boot. */
    if (shmget(SHMPROV_PROBE_KEY, 0, 0) < 0 && errno == ENOENT)
        return 0;
    r = host_read_segments(&t);
    if (r < 0)
        return r;
    n = probe_find_leftovers(t, geteuid(), ret, max);
    free(t);
    if (n > max)
        n = max;
    /* The same re-check status --remove-orphans makes: the id may hold
     * another segment by now, or the segment may be attached again. */
    for (size_t i = 0; i < n; i++)
        ret[i].outcome = orphans_remove(&ret[i].seg, false, ret[i].why, sizeof(ret[i].why));
    return (int)n;
}

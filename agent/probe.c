#include "probe.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "host.h"
#include "kernel.h"
#include "sizing.h"
#include "testing.h"

/* IPC_EXCL: a segment that already holds SHMPROV_PROBE_KEY is never opened.
 * SHM_NORESERVE: no swap committed for a segment never touched (except
 * under strict overcommit: see the acceptance). */
#define PROBE_SHM_PERMS 0600
#define PROBE_SHM_FLAGS (IPC_CREAT | IPC_EXCL | PROBE_SHM_PERMS | SHM_NORESERVE)

struct attempt {
    bool created;
    bool keyed; /* under SHMPROV_PROBE_KEY, not IPC_PRIVATE */
    int create_err; /* errno of shmget when !created */
    int shmid;
    int attach_err; /* the round trip's: errno of shmat, 0 when attached */
    int remove_err; /* errno of IPC_RMID when created, 0 when removed */
};

/* For this probe_run(): whether SHMPROV_PROBE_KEY may be used, and
 * whether another segment was found holding it (then IPC_PRIVATE). */
static bool key_usable, key_taken;

const char *probe_status_name(enum probe_step_status status)
{
    static const char *const names[] = { "passed", "failed", "skipped" };

    return status <= PROBE_SKIPPED ? names[status] : "unknown";
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

static __attribute__((format(printf, 4, 5))) void step_set(struct probe_step *step, enum probe_step_status status,
                                                           int err, const char *fmt, ...)
{
    va_list ap;

    step->status = status;
    step->err = err;
    va_start(ap, fmt);
    (void)vsnprintf(step->detail, sizeof(step->detail), fmt, ap);
    va_end(ap);
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

/* Creates a segment of size bytes and marks it for removal at once. It
 * exists unmarked only between shmget and IPC_RMID, with every catchable
 * signal blocked: only SIGKILL (or a crash) can land there. The round trip
 * (ret_seg not NULL) attaches it first; marked, it then lives exactly as
 * long as it is attached. Returns <0 only when signals could not be blocked. */
static int attempt(uint64_t size, struct attempt *ret, unsigned char **ret_seg)
{
    struct attempt a = { .shmid = -1 };
    sigset_t all, saved;

    *ret = a;
    if (ret_seg)
        *ret_seg = (void *)-1;
    sigfillset(&all);
    if (sigprocmask(SIG_BLOCK, &all, &saved) < 0)
        return -errno;
    a.shmid = create_segment((size_t)size, &a.keyed);
    if (a.shmid < 0) {
        a.create_err = errno;
    } else {
        a.created = true;
        if (ret_seg) {
            *ret_seg = shmat(a.shmid, NULL, 0);
            a.attach_err = *ret_seg == (void *)-1 ? errno : 0;
        }
        if (shmctl(a.shmid, IPC_RMID, NULL) < 0)
            a.remove_err = errno;
    }
    /* Signals that arrived in the window are delivered here. */
    (void)sigprocmask(SIG_SETMASK, &saved, NULL);
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

/* Steps 1 and 2 ask for shmmax bytes or one more: a step that cannot is
 * skipped and says why. */
static bool skipped_untestable(const struct probe_limits *l, struct probe_step *step, const char *why)
{
    if (probe_shmmax_testable(l->shmmax))
        return false;
    step_set(step, PROBE_SKIPPED, 0, "kernel.shmmax %" PRIu64 " is effectively unlimited: %s", l->shmmax, why);
    return true;
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

    if (skipped_untestable(l, step, "no request of one byte more can test it"))
        return 0;
    size = l->shmmax + 1;
    step->bytes = size;
    r = attempt(size, &a, NULL);
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

/* Usage (shmctl SHM_INFO) and the headroom it leaves, into res. */
static int read_usage(const struct probe_limits *l, struct probe_result *res, struct kernel_shm_usage *u)
{
    int r = kernel_read_shm_usage(u);

    if (r < 0)
        return r;
    res->shm_tot_pages = u->pages;
    res->segments = u->segments;
    res->headroom_bytes = probe_headroom(l, u->pages, u->segments);
    return 0;
}

/* The acceptance's verdict on the kernel's answer a, given whether usage
 * u left room for a segment of shmmax bytes. */
static void judge_acceptance(const struct probe_limits *l, const struct attempt *a, const struct kernel_shm_usage *u,
                             bool room, struct probe_step *step)
{
    if (a->created && a->remove_err)
        step_leaked(step, a, l->shmmax);
    else if (a->created && room)
        step_set(step, PROBE_PASSED, 0, "a segment of %" PRIu64 " bytes was created and removed at once, unattached",
                 l->shmmax);
    else if (a->created)
        step_set(step, PROBE_FAILED, 0,
                 "a segment of %" PRIu64 " bytes was created (and removed) although %" PRIu64 " of %" PRIu64
                 " pages and %" PRIu64 " of %" PRIu64 " segments are in use: kernel.shmall or kernel.shmmni in"
                 " effect is higher",
                 l->shmmax, u->pages, l->shmall, u->segments, l->shmmni);
    else if (a->create_err == EINVAL)
        step_set(step, PROBE_FAILED, EINVAL,
                 "%" PRIu64 " bytes refused with EINVAL: kernel.shmmax in effect is below %" PRIu64, l->shmmax,
                 l->shmmax);
    else if (a->create_err == ENOSPC && room)
        step_set(step, PROBE_FAILED, ENOSPC,
                 "%" PRIu64 " bytes refused with ENOSPC although %" PRIu64 " of %" PRIu64 " pages and %" PRIu64
                 " of %" PRIu64 " segments are in use: kernel.shmall or kernel.shmmni in effect is lower",
                 l->shmmax, u->pages, l->shmall, u->segments, l->shmmni);
    else if (a->create_err == ENOSPC || (a->create_err == ENOMEM && l->overcommit_memory == 2 && !room))
        step_no_room(step, l, u, l->shmmax, a->create_err);
    else if (a->create_err == ENOMEM && l->overcommit_memory == 2)
        /* Strict overcommit ignores SHM_NORESERVE and commits the whole
         * size now. ENOMEM comes after the shmmax and shmall checks in
         * newseg(), so the limits themselves admitted the size. */
        step_set(step, PROBE_PASSED, ENOMEM,
                 "%" PRIu64 " bytes passed kernel.shmmax and kernel.shmall but got ENOMEM: vm.overcommit_memory = 2"
                 " commits the whole size and there is not that much memory to commit now",
                 l->shmmax);
    else
        step_set(step, PROBE_FAILED, a->create_err, "shmget of %" PRIu64 " bytes failed: %s%s", l->shmmax,
                 strerror(a->create_err),
                 a->create_err == ENOMEM ? " (vm.overcommit_memory is not 2, so SHM_NORESERVE should have applied)"
                                         : "");
}

/* Step 2. A segment of exactly shmmax bytes must be accepted when usage
 * leaves room for it. Without room the probe reports the room there is
 * (other programs' segments are not the limits' fault) but still asks: the
 * kernel checks shmmax first, so EINVAL still shows a lower shmmax, and a
 * success without room a higher shmall or shmmni. */
static int step_acceptance(const struct probe_limits *l, struct probe_result *res)
{
    struct probe_step *step = &res->acceptance;
    struct attempt a;
    struct kernel_shm_usage u = { 0 };
    bool room;
    int r = read_usage(l, res, &u);

    if (r < 0)
        return r;
    if (skipped_untestable(l, step, "no segment of that size can be requested"))
        return 0;
    if (l->shmmax == 0) {
        step_set(step, PROBE_SKIPPED, 0, "kernel.shmmax is 0: no segment can be created at all");
        return 0;
    }

    room = fits(l, &u, l->shmmax);
    step->bytes = l->shmmax;
    r = attempt(l->shmmax, &a, NULL);
    if (r < 0)
        return r;
    /* Other programs may have taken or freed room between our look and our
     * request: when the kernel's answer disagrees with the look, look again
     * before blaming the limits. */
    if ((a.created && !room) || (!a.created && a.create_err == ENOSPC && room)) {
        r = read_usage(l, res, &u);
        if (r < 0)
            return r;
        room = fits(l, &u, l->shmmax);
    }
    judge_acceptance(l, &a, &u, room, step);
    return 0;
}

/* Writes a pattern that differs from byte to byte and from run to run
 * (seed), and reads it back; false at the first byte that differs. */
static bool write_and_read_back(volatile unsigned char *seg, size_t size, unsigned seed)
{
    for (size_t i = 0; i < size; i++)
        seg[i] = (unsigned char)(i * 131u + seed);
    for (size_t i = 0; i < size; i++)
        if (seg[i] != (unsigned char)(i * 131u + seed))
            return false;
    return true;
}

/* Step 3, the sizing guide's usage example: a page (or shmmax, when that
 * is smaller) attached, written, read back and detached in this process.
 * No limit governs it; it proves the segment is memory that works. */
static int step_round_trip(const struct probe_limits *l, struct probe_step *step)
{
    struct kernel_shm_usage u = { 0 };
    struct attempt a;
    uint64_t size = l->shmmax < l->page_size ? l->shmmax : l->page_size;
    unsigned char *seg;
    int r = kernel_read_shm_usage(&u);

    if (r < 0)
        return r;
    if (size == 0) {
        step_set(step, PROBE_SKIPPED, 0, "kernel.shmmax is 0: no segment can be created");
        return 0;
    }
    if (!fits(l, &u, size)) {
        step_no_room(step, l, &u, size, 0);
        return 0;
    }
    step->bytes = size;
    r = attempt(size, &a, &seg);
    if (r < 0)
        return r;
    if (a.create_err == ENOSPC && kernel_read_shm_usage(&u) == 0 && !fits(l, &u, size))
        step_no_room(step, l, &u, size, ENOSPC);
    else if (a.create_err)
        step_set(step, PROBE_FAILED, a.create_err, "shmget of %" PRIu64 " bytes failed: %s", size,
                 strerror(a.create_err));
    else if (a.remove_err)
        step_leaked(step, &a, size);
    else if (a.attach_err)
        step_set(step, PROBE_FAILED, a.attach_err, "shmat of segment %d failed: %s", a.shmid, strerror(a.attach_err));
    else if (!write_and_read_back(seg, (size_t)size, (unsigned)getpid() ^ (unsigned)clock_monotonic_ms()))
        step_set(step, PROBE_FAILED, 0, "segment %d did not read back the %" PRIu64 " bytes written to it", a.shmid,
                 size);
    else
        step_set(step, PROBE_PASSED, 0, "attached a %" PRIu64 "-byte segment, wrote it, read it back and detached",
                 size);
    /* The last detach destroys the segment, already marked for removal. */
    if (seg != (void *)-1 && shmdt(seg) < 0 && step->status == PROBE_PASSED) {
        int err = errno;
        step_set(step, PROBE_FAILED, err, "shmdt of segment %d failed: %s", a.shmid, strerror(err));
    }
    return 0;
}

/* Whose SHMPROV_PROBE_KEY is, from /proc/sysvipc/shm: readable whatever
 * the segment's permissions, unlike IPC_STAT. */
static void describe_key_holder(char *buf, size_t len)
{
    CLEANUP_FREE struct shmseg_table *t = NULL;
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
                 "not needed: nothing changed since it last passed (it proves the segment is usable "
                 "memory, which no limit affects)");
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
    CLEANUP_FREE struct shmseg_table *t = NULL;
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
    if (n > max)
        n = max;
    /* The same re-check status --remove-orphans makes: the id may hold
     * another segment by now, or the segment may be attached again. */
    for (size_t i = 0; i < n; i++)
        ret[i].outcome = orphans_remove(&ret[i].seg, false, ret[i].why, sizeof(ret[i].why));
    return (int)n;
}

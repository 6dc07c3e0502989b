#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"

struct lock {
    int fd;
};

static long read_holder(int fd)
{
    char buf[32] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    char *end;
    long pid;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    errno = 0;
    pid = strtol(buf, &end, 10);
    return errno == 0 && end != buf && pid > 0 ? pid : 0;
}

static int open_lock_file(const char *path)
{
    return TEMP_FAILURE_RETRY(open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644));
}

/* Waits for the exclusive lock on fd until deadline (CLOCK_MONOTONIC ms). */
static int wait_for_lock(int fd, uint64_t deadline, long *ret_holder_pid)
{
    struct timespec pause = { 0, 20L * 1000 * 1000 };

    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (clock_monotonic_ms() >= deadline) {
            *ret_holder_pid = read_holder(fd);
            return -EWOULDBLOCK;
        }
        nanosleep(&pause, NULL);
    }
    return 0;
}

int lock_acquire(const char *path, unsigned timeout_ms, struct lock **ret, long *ret_holder_pid)
{
    uint64_t deadline = clock_monotonic_ms() + timeout_ms;
    struct lock *l = NULL;
    char pid[32];
    int n, r, fd = open_lock_file(path);

    /* Its directory (/run/shmprov, on a tmpfs) is made only when missing. */
    if (fd < 0 && errno == ENOENT && fsutil_mkdir_parents(path) == 0)
        fd = open_lock_file(path);
    if (fd < 0)
        return -errno;
    r = wait_for_lock(fd, deadline, ret_holder_pid);
    l = r == 0 ? malloc(sizeof(*l)) : NULL;
    if (!l) {
        close(fd);
        return r < 0 ? r : -ENOMEM;
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The lock is held; only the courtesy of naming ourselves failed. */
    }
    l->fd = fd;
    *ret = l;
    return 0;
}

void lock_release(struct lock *l)
{
    if (!l)
        return;
    /* Empty the pid before unlocking so a stale pid is never shown. */
    if (ftruncate(l->fd, 0) < 0) {
        /* nothing to do: the lock goes with the fd */
    }
    close(l->fd);
    free(l);
}

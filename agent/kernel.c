#include "kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "sizes.h"

static const char *const paths[SIZING_KEY_COUNT] = {
    "/proc/sys/kernel/shmmax", "/proc/sys/kernel/shmall", "/proc/sys/kernel/shmmni",
};

const char *kernel_limit_path(enum sizing_key_id id) { return paths[id]; }

int kernel_read_uint(const char *path, uint64_t *ret)
{
    CLEANUP_FREE char *buf = NULL;
    size_t len;
    const char *why;
    int r = fsutil_read_file(path, 64, false, &buf, &len, NULL);

    if (r < 0)
        return r;
    if (len > 0 && buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    /* Not a number: never mistaken for a read error. */
    return sizes_parse_uint(buf, ret, &why) < 0 ? -EBADMSG : 0;
}

int kernel_read_limit(enum sizing_key_id id, uint64_t *ret)
{
    return kernel_read_uint(paths[id], ret);
}

int kernel_write_limit(enum sizing_key_id id, uint64_t value)
{
    char text[32];
    ssize_t written;
    int fd, n, r;

    n = snprintf(text, sizeof(text), "%" PRIu64 "\n", value);
    /* O_TRUNC is a no-op for procfs, and keeps a faked regular file honest. */
    fd = TEMP_FAILURE_RETRY(open(paths[id], O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
    if (fd < 0)
        return -errno;
    /* procfs takes the value in one write, or none when interrupted before
     * it ran; a short write is a failure. */
    written = TEMP_FAILURE_RETRY(write(fd, text, (size_t)n));
    r = written == n ? 0 : written < 0 ? -errno : -EIO;
    /* close() is never retried, and a procfs close has nothing to flush. */
    if (close(fd) < 0 && r == 0 && errno != EINTR)
        r = -errno;
    return r;
}

int kernel_read_shm_usage(struct kernel_shm_usage *ret)
{
    struct shm_info info;

    memset(&info, 0, sizeof(info));
    /* SHM_INFO fills a struct shm_info through the shmid_ds pointer. */
    if (shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info) < 0)
        return -errno;
    ret->segments = info.used_ids > 0 ? (uint64_t)info.used_ids : 0;
    ret->pages = info.shm_tot;
    ret->rss_pages = info.shm_rss;
    ret->swap_pages = info.shm_swp;
    return 0;
}

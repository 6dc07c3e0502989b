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

#include "fsutil.h"
#include "sizes.h"

static const char *const paths[KEY_COUNT] = {
    "/proc/sys/kernel/shmmax", "/proc/sys/kernel/shmall", "/proc/sys/kernel/shmmni",
};

const char *kernel_limit_path(enum sizing_key_id id) { return paths[id]; }

int kernel_read_uint(const char *path, uint64_t *ret)
{
    char *buf = NULL;
    size_t len;
    const char *why;
    uint64_t value;
    int r = fsutil_read_file(path, 64, false, &buf, &len, NULL);

    if (r < 0)
        return r;
    if (len > 0 && buf[len - 1] == '\n')
        buf[len - 1] = '\0';
    r = sizes_parse_uint(buf, &value, &why);
    free(buf);
    if (r < 0)
        return -EIO;
    *ret = value;
    return 0;
}

int kernel_read_limit(enum sizing_key_id id, uint64_t *ret)
{
    return kernel_read_uint(paths[id], ret);
}

int kernel_write_limit(enum sizing_key_id id, uint64_t value, uint64_t *ret_seen)
{
    char text[32];
    uint64_t seen;
    ssize_t written;
    int fd, n, r;

    n = snprintf(text, sizeof(text), "%" PRIu64 "\n", value);
    /* O_TRUNC is a no-op for procfs, and keeps a faked regular file honest. */
    fd = open(paths[id], O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return -errno;
    /* procfs takes the value in one write; a short write is a failure. */
    written = write(fd, text, (size_t)n);
    r = written == n ? 0 : written < 0 ? -errno : -EIO;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        return r;

    r = kernel_read_limit(id, &seen);
    if (r < 0)
        return r;
    if (ret_seen)
        *ret_seen = seen;
    return seen == value ? 0 : -EIO;
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

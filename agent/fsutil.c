#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsutil_read_file(const char *path, size_t max, bool nofollow, char **ret_buf,
                     size_t *ret_len, struct stat *ret_st)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0);
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap;
    int fd, r;

    fd = open(path, flags);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        goto out;
    }
    if ((size_t)st.st_size > max) {
        r = -EFBIG;
        goto out;
    }

    /* One byte more than allowed, so growth after fstat is still caught. */
    cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    buf = malloc(cap + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n;
        if (len == cap) {
            char *bigger;
            if (cap > max) {
                r = -EFBIG;
                goto out;
            }
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            bigger = realloc(buf, cap + 1);
            if (!bigger) {
                r = -ENOMEM;
                goto out;
            }
            buf = bigger;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        r = -EFBIG;
        goto out;
    }
    buf[len] = '\0';
    *ret_buf = buf;
    buf = NULL;
    *ret_len = len;
    if (ret_st)
        *ret_st = st;
    r = 0;
out:
    free(buf);
    close(fd);
    return r;
}

const char *fsutil_strerror(int negative_errno)
{
    switch (negative_errno) {
    case -EFBIG:
        return "file is too large";
    case -EINVAL:
        return "not a regular file";
    case -EISDIR:
        return "is a directory, not a file";
    case -ELOOP:
        return "is a symbolic link, which shmprov does not follow here";
    default:
        return strerror(-negative_errno);
    }
}

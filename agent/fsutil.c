#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

int fsutil_read_file(const char *path, size_t max, bool nofollow, char **ret_buf,
                     size_t *ret_len, struct stat *ret_st)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0);
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap;
    int fd, r;

    fd = TEMP_FAILURE_RETRY(open(path, flags));
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

/* ---- writing ------------------------------------------------------------ */

/* Splits path into a directory fd and the base name inside it. */
static int open_parent(const char *path, int *ret_dirfd, char *name, size_t name_len)
{
    char *copy = strdup(path), *dir, *base;
    int fd, r = 0;

    if (!copy)
        return -ENOMEM;
    base = strrchr(copy, '/');
    if (!base || base[1] == '\0') {
        r = -EINVAL;
        goto out;
    }
    if ((size_t)snprintf(name, name_len, "%s", base + 1) >= name_len) {
        r = -ENAMETOOLONG;
        goto out;
    }
    *base = '\0';
    dir = copy[0] ? copy : "/";
    fd = TEMP_FAILURE_RETRY(open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    *ret_dirfd = fd;
out:
    free(copy);
    return r;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    return fsutil_write_atomic_renamed(path, data, len, mode, NULL);
}

int fsutil_write_atomic_renamed(const char *path, const void *data, size_t len, mode_t mode, bool *ret_renamed)
{
    char name[256], temp[300];
    struct stat st;
    int dirfd = -1, fd = -1, r;
    bool created = false;

    if (ret_renamed)
        *ret_renamed = false;

    r = open_parent(path, &dirfd, name, sizeof(name));
    if (r < 0)
        return r;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
            r = -ELOOP;
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            r = -EEXIST;
            goto out;
        }
    } else if (errno != ENOENT) {
        r = -errno;
        goto out;
    }

    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        uint32_t nonce;
        if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
            nonce = (uint32_t)getpid() ^ (uint32_t)attempt * 2654435761u;
        if ((size_t)snprintf(temp, sizeof(temp), FSUTIL_TEMP_PREFIX "%s.%08x", name, nonce) >= sizeof(temp)) {
            r = -ENAMETOOLONG;
            goto out;
        }
        fd = TEMP_FAILURE_RETRY(openat(dirfd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (fd < 0 && errno != EEXIST) {
            r = -errno;
            goto out;
        }
    }
    if (fd < 0) {
        r = -EEXIST;
        goto out;
    }
    created = true;

    r = write_all(fd, data, len);
    if (r < 0)
        goto out;
    if (TEMP_FAILURE_RETRY(fchmod(fd, mode)) < 0 || TEMP_FAILURE_RETRY(fsync(fd)) < 0) {
        r = -errno;
        goto out;
    }
    /* Never retried: on Linux the descriptor is gone even when close()
     * fails, and a retry could close another thread's new one. */
    if (close(fd) < 0 && errno != EINTR) {
        fd = -1;
        r = -errno;
        goto out;
    }
    fd = -1;
    if (TEMP_FAILURE_RETRY(renameat(dirfd, temp, dirfd, name)) < 0) {
        r = -errno;
        goto out;
    }
    created = false;
    if (ret_renamed)
        *ret_renamed = true;
    /* The rename is durable only once the directory is on disk. */
    if (TEMP_FAILURE_RETRY(fsync(dirfd)) < 0) {
        r = -errno;
        goto out;
    }
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    if (created)
        (void)TEMP_FAILURE_RETRY(unlinkat(dirfd, temp, 0));
    if (dirfd >= 0)
        close(dirfd);
    return r;
}

int fsutil_remove_durable(const char *path)
{
    char name[256];
    struct stat st;
    int dirfd = -1, r;

    r = open_parent(path, &dirfd, name, sizeof(name));
    if (r < 0)
        return r;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = S_ISLNK(st.st_mode) ? -ELOOP : -EEXIST;
        goto out;
    }
    if (TEMP_FAILURE_RETRY(unlinkat(dirfd, name, 0)) < 0 || TEMP_FAILURE_RETRY(fsync(dirfd)) < 0) {
        r = -errno;
        goto out;
    }
    r = 0;
out:
    close(dirfd);
    return r;
}

int fsutil_remove_stale_temps_at(int dirfd, const char *name, unsigned min_age_s)
{
    char prefix[300];
    size_t prefix_len;
    time_t now = time(NULL);
    struct dirent *de;
    DIR *dir;
    int fd, removed = 0;

    if ((size_t)snprintf(prefix, sizeof(prefix), FSUTIL_TEMP_PREFIX "%s%s", name ? name : "", name ? "." : "") >=
        sizeof(prefix))
        return -ENAMETOOLONG; /* cut short, it could match another file's temporaries */
    prefix_len = strlen(prefix);
    /* fdopendir() takes the fd it is given: list through a duplicate,
     * from the top (it shares dirfd's offset; rewinddir() would fail
     * unseen). */
    fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    dir = fdopendir(fd);
    if (!dir) {
        int r = -errno; /* before close() can change it */
        close(fd);
        return r;
    }
    // cppcheck-suppress readdirCalled ; readdir_r is deprecated (glibc 2.24); this DIR is not shared
    while ((de = readdir(dir))) {
        struct stat st;
        if (strncmp(de->d_name, prefix, prefix_len) != 0)
            continue;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (min_age_s && now - st.st_mtime < (time_t)min_age_s)
            continue;
        if (TEMP_FAILURE_RETRY(unlinkat(dirfd, de->d_name, 0)) == 0)
            removed++;
    }
    if (removed > 0)
        (void)TEMP_FAILURE_RETRY(fsync(dirfd));
    closedir(dir);
    return removed;
}

int fsutil_remove_stale_temps(const char *path)
{
    char name[256];
    int dirfd = -1, r;

    r = open_parent(path, &dirfd, name, sizeof(name));
    if (r < 0)
        return r;
    r = fsutil_remove_stale_temps_at(dirfd, name, 0);
    close(dirfd);
    return r;
}

int fsutil_mkdir_p(const char *dir, mode_t mode)
{
    char *copy;
    int r = 0;

    if (!dir[0])
        return -EINVAL;
    copy = strdup(dir);
    if (!copy)
        return -ENOMEM;
    for (char *p = copy + 1; r == 0; p++) {
        char c = *p;

        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (TEMP_FAILURE_RETRY(mkdir(copy, mode)) < 0 && errno != EEXIST)
            r = -errno;
        *p = c;
        if (c == '\0')
            break;
    }
    free(copy);
    return r;
}

int fsutil_mkdir_parents(const char *path)
{
    char *dir = strdup(path), *slash;
    int r;

    if (!dir)
        return -ENOMEM;
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    r = slash && dir[0] ? fsutil_mkdir_p(dir, 0755) : 0;
    free(dir);
    return r;
}

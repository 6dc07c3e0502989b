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

#include "cleanup.h"

int fsutil_read_file(const char *path, size_t max, bool nofollow, char **ret_buf,
                     size_t *ret_len, struct stat *ret_st)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0);
    CLEANUP_CLOSE int fd = TEMP_FAILURE_RETRY(open(path, flags));
    CLEANUP_FREE char *buf = NULL;
    struct stat st;
    size_t len = 0, cap;

    if (fd < 0 || fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    if ((size_t)st.st_size > max)
        return -EFBIG;
    /* One byte more than allowed, so growth after fstat is still caught. */
    cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    buf = malloc(cap + 1);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t n;
        if (len == cap) {
            char *bigger;
            if (cap > max)
                return -EFBIG;
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            bigger = realloc(buf, cap + 1);
            if (!bigger)
                return -ENOMEM;
            buf = bigger;
        }
        n = TEMP_FAILURE_RETRY(read(fd, buf + len, cap - len));
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max)
        return -EFBIG;
    buf[len] = '\0';
    *ret_buf = buf;
    buf = NULL;
    *ret_len = len;
    if (ret_st)
        *ret_st = st;
    return 0;
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
    const char *base = strrchr(path, '/');
    char *dir;
    int fd;

    if (!base || base[1] == '\0')
        return -EINVAL;
    if ((size_t)snprintf(name, name_len, "%s", base + 1) >= name_len)
        return -ENAMETOOLONG;
    dir = base == path ? strdup("/") : strndup(path, (size_t)(base - path));
    if (!dir)
        return -ENOMEM;
    fd = TEMP_FAILURE_RETRY(open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    free(dir);
    if (fd < 0)
        return -errno;
    *ret_dirfd = fd;
    return 0;
}

/* What is at name: 0 for a regular file, -ENOENT for nothing, -ELOOP for a
 * symlink, -EEXIST for anything else; never followed. */
static int regular_or_absent(int dirfd, const char *name)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (S_ISLNK(st.st_mode))
        return -ELOOP;
    return S_ISREG(st.st_mode) ? 0 : -EEXIST;
}

/* A new temporary file beside name, a random suffix keeping concurrent
 * writers apart: its fd, with its name in temp, or a negative errno. */
static int create_temp(int dirfd, const char *name, char *temp, size_t temp_len)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        uint32_t nonce;
        int fd;

        if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
            nonce = (uint32_t)getpid() ^ (uint32_t)attempt * 2654435761u;
        if ((size_t)snprintf(temp, temp_len, FSUTIL_TEMP_PREFIX "%s.%08x", name, nonce) >= temp_len)
            return -ENAMETOOLONG;
        fd = TEMP_FAILURE_RETRY(openat(dirfd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

/* Every byte, the mode, then fsync: the temporary file is whole on disk
 * before it can replace anything. Closes fd whatever happens. */
static int fill_temp(int fd, const void *data, size_t len, mode_t mode)
{
    const char *p = data;
    int r = 0;

    while (len > 0 && r == 0) {
        ssize_t n = TEMP_FAILURE_RETRY(write(fd, p, len));
        if (n < 0)
            r = -errno;
        else
            p += n, len -= (size_t)n;
    }
    if (r == 0 && (TEMP_FAILURE_RETRY(fchmod(fd, mode)) < 0 || TEMP_FAILURE_RETRY(fsync(fd)) < 0))
        r = -errno;
    /* Never retried: on Linux the descriptor is gone even when close()
     * fails, and a retry could close another thread's new one. */
    if (close(fd) < 0 && errno != EINTR && r == 0)
        r = -errno;
    return r;
}

int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    return fsutil_write_atomic_renamed(path, data, len, mode, NULL);
}

int fsutil_write_atomic_renamed(const char *path, const void *data, size_t len, mode_t mode, bool *ret_renamed)
{
    char name[256], temp[300];
    CLEANUP_CLOSE int dirfd = -1;
    int fd, r;

    if (ret_renamed)
        *ret_renamed = false;
    r = open_parent(path, &dirfd, name, sizeof(name));
    if (r < 0)
        return r;
    r = regular_or_absent(dirfd, name);
    if (r < 0 && r != -ENOENT)
        return r;
    fd = create_temp(dirfd, name, temp, sizeof(temp));
    if (fd < 0)
        return fd;
    r = fill_temp(fd, data, len, mode);
    if (r == 0 && TEMP_FAILURE_RETRY(renameat(dirfd, temp, dirfd, name)) < 0)
        r = -errno;
    if (r < 0) {
        (void)TEMP_FAILURE_RETRY(unlinkat(dirfd, temp, 0));
        return r;
    }
    if (ret_renamed)
        *ret_renamed = true;
    /* The rename is durable only once the directory is on disk. */
    if (TEMP_FAILURE_RETRY(fsync(dirfd)) < 0)
        return -errno;
    return 0;
}

int fsutil_remove_durable(const char *path)
{
    char name[256];
    CLEANUP_CLOSE int dirfd = -1;
    int r = open_parent(path, &dirfd, name, sizeof(name));

    if (r == 0)
        r = regular_or_absent(dirfd, name);
    if (r < 0)
        return r;
    if (TEMP_FAILURE_RETRY(unlinkat(dirfd, name, 0)) < 0 || TEMP_FAILURE_RETRY(fsync(dirfd)) < 0)
        return -errno;
    return 0;
}

int fsutil_remove_stale_temps_at(int dirfd, const char *name, unsigned min_age_s)
{
    char prefix[300];
    size_t prefix_len;
    time_t now = time(NULL);
    struct dirent *de;
    DIR *dir = NULL;
    int removed = 0;
    /* fdopendir() takes the fd it is given: list through a duplicate,
     * from the top (it shares dirfd's offset; rewinddir() would fail
     * unseen). */
    int fd;

    if ((size_t)snprintf(prefix, sizeof(prefix), FSUTIL_TEMP_PREFIX "%s%s", name ? name : "", name ? "." : "") >=
        sizeof(prefix))
        return -ENAMETOOLONG; /* cut short, it could match another file's temporaries */
    prefix_len = strlen(prefix);
    fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (lseek(fd, 0, SEEK_SET) < 0 || !(dir = fdopendir(fd))) {
        int r = -errno;

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

int fsutil_remove_stale_temps(const char *path, unsigned min_age_s)
{
    char name[256];
    CLEANUP_CLOSE int dirfd = -1;
    int r = open_parent(path, &dirfd, name, sizeof(name));

    return r < 0 ? r : fsutil_remove_stale_temps_at(dirfd, name, min_age_s);
}

/* mkdir -p of the first len bytes of path. */
static int mkdir_prefix(const char *path, size_t len, mode_t mode)
{
    char *copy = strndup(path, len);
    int r = 0;

    if (!copy)
        return -ENOMEM;
    if (!copy[0])
        r = -EINVAL;
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

int fsutil_mkdir_p(const char *dir, mode_t mode)
{
    return mkdir_prefix(dir, strlen(dir), mode);
}

int fsutil_mkdir_parents(const char *path)
{
    const char *slash = strrchr(path, '/');

    return !slash || slash == path ? 0 : mkdir_prefix(path, (size_t)(slash - path), 0755);
}

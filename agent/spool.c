#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"

#define SEQ_DIGITS 20
#define UUID_LEN 36
#define SUFFIX ".json"
/* "<20 digits>-<uuid>.json" */
#define NAME_LEN (SEQ_DIGITS + 1 + UUID_LEN + sizeof(SUFFIX) - 1)
/* A temporary file this old belongs to a run that died, not to a writer
 * still at work. */
#define STALE_TEMP_SECONDS 600

struct spool {
    char *path;
    int dirfd;
    size_t max_count;
    uint64_t max_bytes;
    uint64_t dropped;
};

static bool uuid_ok(const char *id)
{
    for (size_t i = 0; i < UUID_LEN; i++) {
        char c = id[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return id[UUID_LEN] == '\0';
}

/* Recognises our own file names; anything else in the directory is not
 * ours to read, count or delete. */
static bool parse_name(const char *name, uint64_t *ret_seq, char *ret_id)
{
    char digits[SEQ_DIGITS + 1], id[UUID_LEN + 1], *end;
    unsigned long long seq;

    if (strlen(name) != NAME_LEN || name[SEQ_DIGITS] != '-' ||
        strcmp(name + SEQ_DIGITS + 1 + UUID_LEN, SUFFIX) != 0)
        return false;
    for (size_t i = 0; i < SEQ_DIGITS; i++)
        if (name[i] < '0' || name[i] > '9')
            return false;
    memcpy(digits, name, SEQ_DIGITS);
    digits[SEQ_DIGITS] = '\0';
    memcpy(id, name + SEQ_DIGITS + 1, UUID_LEN);
    id[UUID_LEN] = '\0';
    if (!uuid_ok(id))
        return false;
    errno = 0;
    seq = strtoull(digits, &end, 10);
    if (errno != 0 || *end != '\0') /* 20 digits can exceed 2^64 */
        return false;
    *ret_seq = seq;
    if (ret_id)
        memcpy(ret_id, id, UUID_LEN + 1);
    return true;
}

static int join(const struct spool *s, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", s->path, name);

    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* mkdir -p, 0700 for each directory it creates: the spool holds what a
 * host reports about itself. */
static int make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            int r = -errno;
            *p = '/';
            return r;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int read_counter(const struct spool *s, uint64_t *ret)
{
    char path[PATH_MAX], *buf = NULL, *end;
    unsigned long long value;
    size_t len;
    int r;

    r = join(s, SPOOL_DROPPED_FILE, path, sizeof(path));
    if (r < 0)
        return r;
    r = fsutil_read_file(path, 64, true, &buf, &len, NULL);
    if (r == -ENOENT) {
        *ret = 0;
        return 0;
    }
    if (r < 0)
        return r;
    /* strtoull would take a sign or spaces: require a digit first. */
    if (buf[0] < '0' || buf[0] > '9') {
        r = -EBADMSG;
        goto out;
    }
    errno = 0;
    value = strtoull(buf, &end, 10);
    if (errno != 0 || (*end != '\0' && strcmp(end, "\n") != 0)) {
        r = -EBADMSG;
        goto out;
    }
    *ret = value;
    r = 0;
out:
    free(buf);
    return r;
}

static int write_counter(const struct spool *s, uint64_t value)
{
    char path[PATH_MAX], text[32];
    int r, n;

    r = join(s, SPOOL_DROPPED_FILE, path, sizeof(path));
    if (r < 0)
        return r;
    n = snprintf(text, sizeof(text), "%" PRIu64 "\n", value);
    return fsutil_write_atomic(path, text, (size_t)n, 0600);
}

/* A reader of its own: fdopendir() would take the directory fd. */
static DIR *open_listing(const struct spool *s)
{
    int fd = fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (!d) {
        int saved = errno;
        close(fd);
        errno = saved;
        return NULL;
    }
    /* A dup shares the offset: start from the top every time. */
    rewinddir(d);
    return d;
}

int spool_open(const char *dir, size_t max_count, uint64_t max_bytes, struct spool **ret)
{
    struct spool *s = NULL;
    struct stat st;
    size_t len;
    int r;

    if (!dir || !ret || max_count == 0 || max_bytes == 0)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->dirfd = -1;
    s->max_count = max_count;
    s->max_bytes = max_bytes;
    s->path = strdup(dir);
    if (!s->path) {
        r = -ENOMEM;
        goto out;
    }
    /* "spool/" would make O_NOFOLLOW follow a symlink named spool. */
    len = strlen(s->path);
    while (len > 1 && s->path[len - 1] == '/')
        s->path[--len] = '\0';
    if (len == 0 || strcmp(s->path, "/") == 0) {
        r = -EINVAL;
        goto out;
    }

    r = make_dirs(s->path);
    if (r < 0)
        goto out;
    s->dirfd = open(s->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->dirfd < 0) {
        r = -errno;
        /* A symlink comes back as ELOOP, or as ENOTDIR next to O_DIRECTORY
         * on some kernels: say which it was. */
        if (r == -ENOTDIR && lstat(s->path, &st) == 0 && S_ISLNK(st.st_mode))
            r = -ELOOP;
        goto out;
    }
    if (fstat(s->dirfd, &st) < 0) {
        r = -errno;
        goto out;
    }
    /* Whoever can write here can plant events in our name or delete the
     * ones waiting. */
    if (st.st_uid != geteuid() || (st.st_mode & 0022)) {
        r = -EPERM;
        goto out;
    }
    r = read_counter(s, &s->dropped);
    if (r < 0)
        goto out;
    (void)fsutil_remove_stale_temps_at(s->dirfd, NULL, STALE_TEMP_SECONDS);

    *ret = s;
    s = NULL;
    r = 0;
out:
    spool_close(s);
    return r;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    if (s->dirfd >= 0)
        close(s->dirfd);
    free(s->path);
    free(s);
}

const char *spool_path(const struct spool *s)
{
    return s->path;
}

uint64_t spool_dropped(const struct spool *s)
{
    return s->dropped;
}

static int compare_entries(const void *a, const void *b)
{
    /* Fixed-width sequence first: name order is age order. */
    return strcmp(((const struct spool_entry *)a)->name, ((const struct spool_entry *)b)->name);
}

/* Looks at one of our names without following or opening anything that is
 * not a regular file of a sane size. Returns 0 (entry->error may be set)
 * or 1 when the file vanished meanwhile. */
static int inspect(const struct spool *s, const char *name, struct spool_entry *e)
{
    struct stat st;
    int fd;

    _Static_assert(NAME_LEN < sizeof(e->name), "names fit");
    memset(e, 0, sizeof(*e));
    memcpy(e->name, name, NAME_LEN + 1); /* parse_name() checked the length */
    memcpy(e->id, name + SEQ_DIGITS + 1, UUID_LEN);
    e->id[UUID_LEN] = '\0';

    if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 1;
        e->error = -errno;
        return 0;
    }
    e->bytes = (uint64_t)st.st_size;
    if (S_ISLNK(st.st_mode)) {
        e->error = -ELOOP;
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        e->error = -EINVAL;
        return 0;
    }
    if (e->bytes > SPOOL_MAX_EVENT_BYTES) {
        e->error = -EFBIG;
        return 0;
    }
    /* Readable now, or the caller hears why before it counts on it. */
    fd = openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        e->error = -errno;
        return 0;
    }
    close(fd);
    return 0;
}

/* All our entries, sorted, and the highest sequence among them (usable or
 * not) so that a new one sorts after every one of them. */
static int scan(const struct spool *s, struct spool_entry **ret, size_t *ret_count,
                uint64_t *ret_newest)
{
    struct spool_entry *entries = NULL;
    size_t count = 0, cap = 0;
    uint64_t newest = 0;
    struct dirent *de;
    DIR *d;
    int r;

    d = open_listing(s);
    if (!d)
        return -errno;
    for (;;) {
        uint64_t seq;

        errno = 0;
        // cppcheck-suppress readdirCalled ; readdir_r is deprecated (glibc 2.24); this DIR is not shared
        de = readdir(d);
        if (!de) {
            if (errno != 0) {
                r = -errno;
                goto out;
            }
            break;
        }
        /* Dot files include fsutil_write_atomic()'s temporary files. */
        if (de->d_name[0] == '.' || !parse_name(de->d_name, &seq, NULL))
            continue;
        if (count == cap) {
            size_t bigger_cap = cap ? cap * 2 : 16;
            struct spool_entry *bigger = realloc(entries, bigger_cap * sizeof(*entries));
            if (!bigger) {
                r = -ENOMEM;
                goto out;
            }
            entries = bigger;
            cap = bigger_cap;
        }
        if (inspect(s, de->d_name, &entries[count]) == 1)
            continue;
        if (seq > newest)
            newest = seq;
        count++;
    }
    if (count > 0)
        qsort(entries, count, sizeof(*entries), compare_entries);
    if (count == 0) {
        free(entries);
        entries = NULL;
    }
    *ret = entries;
    entries = NULL;
    *ret_count = count;
    if (ret_newest)
        *ret_newest = newest;
    r = 0;
out:
    free(entries);
    closedir(d);
    return r;
}

int spool_list(struct spool *s, struct spool_entry **ret, size_t *ret_count)
{
    if (!s || !ret || !ret_count)
        return -EINVAL;
    return scan(s, ret, ret_count, NULL);
}

static int entry_path(const struct spool *s, const struct spool_entry *e, char *buf, size_t size)
{
    uint64_t seq;

    /* Only names we could have made: never "../" or a foreign file. */
    if (!e || !parse_name(e->name, &seq, NULL))
        return -EINVAL;
    return join(s, e->name, buf, size);
}

int spool_read(struct spool *s, const struct spool_entry *e, char **ret_json, size_t *ret_len)
{
    char path[PATH_MAX];
    int r;

    if (!s || !ret_json || !ret_len)
        return -EINVAL;
    r = entry_path(s, e, path, sizeof(path));
    if (r < 0)
        return r;
    return fsutil_read_file(path, SPOOL_MAX_EVENT_BYTES, true, ret_json, ret_len, NULL);
}

int spool_remove(struct spool *s, const struct spool_entry *e)
{
    char path[PATH_MAX];
    int r;

    if (!s)
        return -EINVAL;
    r = entry_path(s, e, path, sizeof(path));
    if (r < 0)
        return r;
    return fsutil_remove_durable(path);
}

int spool_clear_dropped(struct spool *s, uint64_t reported)
{
    uint64_t left;
    int r;

    if (!s)
        return -EINVAL;
    if (reported == 0)
        return 0;
    left = s->dropped > reported ? s->dropped - reported : 0;
    r = write_counter(s, left);
    if (r < 0)
        return r;
    s->dropped = left;
    return 0;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || ts.tv_sec < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Deletes the oldest usable events until the bounds hold with the one
 * just written (new_len bytes) counted in. Best effort: the new event is
 * already safe, and a spool left over its bound is trimmed next time. */
static void enforce_bounds(struct spool *s, const struct spool_entry *entries, size_t count,
                           size_t new_len)
{
    uint64_t total = new_len, victims = 0, removed = 0;
    size_t usable = 1, cut = 0;
    char path[PATH_MAX];

    for (size_t i = 0; i < count; i++) {
        if (entries[i].error == 0) {
            usable++;
            total += entries[i].bytes;
        }
    }
    /* Oldest first, until both bounds hold. */
    for (; cut < count && (usable > s->max_count || total > s->max_bytes); cut++) {
        if (entries[cut].error != 0)
            continue;
        usable--;
        total -= entries[cut].bytes;
        victims++;
    }
    if (victims == 0)
        return;

    /* Counted before deleting: a crash in between over-counts, it never
     * hides a loss. No counter, no deletion. */
    if (write_counter(s, s->dropped + victims) < 0)
        return;
    for (size_t i = 0; i < cut; i++) {
        if (entries[i].error != 0)
            continue;
        if (join(s, entries[i].name, path, sizeof(path)) == 0 && fsutil_remove_durable(path) == 0)
            removed++;
    }
    if (removed != victims && write_counter(s, s->dropped + removed) < 0) {
        /* The counter says more than was dropped: an over-count, kept. */
        s->dropped += victims;
        return;
    }
    s->dropped += removed;
}

int spool_put(struct spool *s, const char *event_id, const char *json, size_t len)
{
    struct spool_entry *entries = NULL;
    char name[NAME_LEN + 1], path[PATH_MAX];
    size_t count = 0;
    uint64_t newest = 0, seq;
    int r;

    if (!s || !event_id || (!json && len > 0) || strlen(event_id) != UUID_LEN || !uuid_ok(event_id))
        return -EINVAL;
    if (len > SPOOL_MAX_EVENT_BYTES || len > s->max_bytes)
        return -EFBIG;

    r = scan(s, &entries, &count, &newest);
    if (r < 0)
        return r;
    /* The id is fixed when the event is made: the same id is the same
     * event, and one copy is enough. */
    for (size_t i = 0; i < count; i++) {
        if (entries[i].error == 0 && strcmp(entries[i].id, event_id) == 0) {
            r = 0;
            goto out;
        }
    }

    /* Wall-clock time orders events across runs; bumping past the newest
     * keeps the order strict even when the clock went back (an RTC reset
     * at boot, before NTP). */
    seq = realtime_ns();
    if (seq <= newest) {
        if (newest == UINT64_MAX) {
            r = -EOVERFLOW;
            goto out;
        }
        seq = newest + 1;
    }
    if ((size_t)snprintf(name, sizeof(name), "%0*" PRIu64 "-%s" SUFFIX, SEQ_DIGITS, seq, event_id) >= sizeof(name)) {
        r = -ENAMETOOLONG;
        goto out;
    }
    r = join(s, name, path, sizeof(path));
    if (r < 0)
        goto out;
    r = fsutil_write_atomic(path, json ? json : "", len, 0600);
    if (r < 0)
        goto out;

    enforce_bounds(s, entries, count, len);
    r = 0;
out:
    free(entries);
    return r;
}

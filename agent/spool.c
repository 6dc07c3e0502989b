#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cleanup.h"
#include "fsutil.h"

#define SEQ_DIGITS 20
#define UUID_LEN 36
#define SUFFIX ".json"
/* "<20 digits>-<uuid>.json" */
#define NAME_LEN (SEQ_DIGITS + 1 + UUID_LEN + sizeof(SUFFIX) - 1)
/* A temporary file this old belongs to a run that died, not to a writer
 * still at work. */
#define STALE_TEMP_SECONDS 600

struct counter {
    uint64_t value;
    bool unknown; /* value may be short until a delivered report says so */
    int damage;   /* why spool_open() found the file unusable, or 0 */
    int rewrite;  /* why it could not be rewritten then, or 0 */
};

struct spool {
    char *path;
    int dirfd;
    size_t max_count;
    uint64_t max_bytes;
    struct counter counters[SPOOL_COUNTERS];
};

static const char *const counter_files[SPOOL_COUNTERS] = {
    [SPOOL_COUNTER_DROPPED] = SPOOL_DROPPED_FILE,
    [SPOOL_COUNTER_QUARANTINED] = SPOOL_QUARANTINED_FILE,
    [SPOOL_COUNTER_REJECTED] = SPOOL_REJECTED_FILE,
};
static const char *const unknown_files[SPOOL_COUNTERS] = {
    [SPOOL_COUNTER_DROPPED] = SPOOL_DROPPED_FILE SPOOL_UNKNOWN_SUFFIX,
    [SPOOL_COUNTER_QUARANTINED] = SPOOL_QUARANTINED_FILE SPOOL_UNKNOWN_SUFFIX,
    [SPOOL_COUNTER_REJECTED] = SPOOL_REJECTED_FILE SPOOL_UNKNOWN_SUFFIX,
};
/* Where an event set aside and counted in each counter goes. */
static const char *const aside_dirs[SPOOL_COUNTERS] = {
    [SPOOL_COUNTER_QUARANTINED] = SPOOL_QUARANTINE_DIR,
    [SPOOL_COUNTER_REJECTED] = SPOOL_REJECTED_DIR,
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
static bool parse_name(const char *name, uint64_t *ret_seq)
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
    return true;
}

/* dir/name, malloc'd; NULL without memory. */
static char *path_in(const char *dir, const char *name)
{
    char *path;

    return asprintf(&path, "%s/%s", dir, name) < 0 ? NULL : path;
}

/* The counter c in the spool directory dir: 0 when absent, -EBADMSG when
 * it is not one number. */
static int read_counter_in(const char *dir, enum spool_counter c, uint64_t *ret)
{
    CLEANUP_FREE char *path = path_in(dir, counter_files[c]);
    char *buf = NULL, *end;
    unsigned long long value;
    size_t len;
    int r;

    if (!path)
        return -ENOMEM;
    r = fsutil_read_file(path, 64, true, &buf, &len, NULL);
    if (r == -ENOENT) {
        *ret = 0;
        return 0;
    }
    if (r < 0)
        return r;
    /* strtoull would take a sign or spaces: require a digit first. */
    errno = 0;
    value = strtoull(buf, &end, 10);
    if (buf[0] < '0' || buf[0] > '9' || errno != 0 || (*end != '\0' && strcmp(end, "\n") != 0))
        r = -EBADMSG;
    else
        *ret = value;
    free(buf);
    return r;
}

static int write_counter(const struct spool *s, enum spool_counter c, uint64_t value)
{
    CLEANUP_FREE char *path = path_in(s->path, counter_files[c]);
    char text[32];
    int n;

    if (!path)
        return -ENOMEM;
    n = snprintf(text, sizeof(text), "%" PRIu64 "\n", value);
    return fsutil_write_atomic(path, text, (size_t)n, 0600);
}

/* A counter that cannot be read counts from 0 again, and its marker keeps
 * "unknown" across runs until a delivered report has said so: a damaged
 * file must cost a number, never the reports still to come. */
static void load_counter(struct spool *s, enum spool_counter c)
{
    struct counter *k = &s->counters[c];
    CLEANUP_FREE char *marker = path_in(s->path, unknown_files[c]);
    struct stat st;
    int r = read_counter_in(s->path, c, &k->value);

    if (r == 0) {
        /* A marker we cannot see is taken as there: unknown is the safe side. */
        if (TEMP_FAILURE_RETRY(fstatat(s->dirfd, unknown_files[c], &st, AT_SYMLINK_NOFOLLOW)) == 0 ||
            errno != ENOENT)
            k->unknown = true;
        return;
    }
    k->damage = r;
    k->value = 0;
    k->unknown = true;
    k->rewrite = marker ? fsutil_write_atomic(marker, "", 0, 0600) : -ENOMEM;
    r = write_counter(s, c, 0);
    if (k->rewrite == 0)
        k->rewrite = r;
}

/* A reader on fd, which it takes over (closed on failure). NULL with
 * *ret_error set to the errno of what failed. */
static DIR *listing_of(int fd, int *ret_error)
{
    DIR *d = NULL;

    if (fd >= 0)
        while (!(d = fdopendir(fd)) && errno == EINTR)
            ;
    if (!d) {
        *ret_error = -errno; /* before close() can change it */
        if (fd >= 0)
            close(fd);
    }
    return d;
}

/* A reader of its own: fdopendir() would take the directory fd. */
static DIR *open_listing(const struct spool *s, int *ret_error)
{
    int fd = TEMP_FAILURE_RETRY(fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0));

    /* A dup shares the offset: start from the top every time, and know
     * it (rewinddir() would fail unseen and list nothing). */
    if (fd >= 0 && lseek(fd, 0, SEEK_SET) < 0) {
        *ret_error = -errno;
        close(fd);
        return NULL;
    }
    return listing_of(fd, ret_error);
}

/* Whoever can write to the directory fd can plant events in our name or
 * delete the ones waiting: it must be ours and private. */
static int check_trusted(int fd)
{
    struct stat st;

    if (TEMP_FAILURE_RETRY(fstat(fd, &st)) < 0)
        return -errno;
    return st.st_uid != geteuid() || (st.st_mode & 0022) ? -EPERM : 0;
}

/* The directory itself: ours, private, never through a symlink. */
static int open_dir(struct spool *s)
{
    struct stat st;

    s->dirfd = TEMP_FAILURE_RETRY(open(s->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (s->dirfd < 0) {
        int r = -errno;
        /* A symlink comes back as ELOOP, or as ENOTDIR next to O_DIRECTORY
         * on some kernels: say which it was. */
        if (r == -ENOTDIR && TEMP_FAILURE_RETRY(lstat(s->path, &st)) == 0 && S_ISLNK(st.st_mode))
            r = -ELOOP;
        return r;
    }
    return check_trusted(s->dirfd);
}

int spool_open(const char *dir, size_t max_count, uint64_t max_bytes, struct spool **ret)
{
    struct spool *s = NULL;
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

    /* 0700 for each directory made: the spool holds what a host reports
     * about itself. */
    r = fsutil_mkdir_p(s->path, 0700);
    if (r < 0)
        goto out;
    r = open_dir(s);
    if (r < 0)
        goto out;
    for (int c = 0; c < SPOOL_COUNTERS; c++)
        load_counter(s, (enum spool_counter)c);
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

const char *spool_counter_file(enum spool_counter c)
{
    return counter_files[c];
}

uint64_t spool_count(const struct spool *s, enum spool_counter c)
{
    return s->counters[c].value;
}

bool spool_count_unknown(const struct spool *s, enum spool_counter c)
{
    return s->counters[c].unknown;
}

int spool_counter_damaged(const struct spool *s, enum spool_counter c, int *ret_rewrite_error)
{
    if (ret_rewrite_error)
        *ret_rewrite_error = s->counters[c].rewrite;
    return s->counters[c].damage;
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

    if (TEMP_FAILURE_RETRY(fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) < 0) {
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
    fd = TEMP_FAILURE_RETRY(openat(s->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        e->error = -errno;
        return 0;
    }
    close(fd);
    return 0;
}

/* readdir() that retries an interrupted getdents (nothing was consumed).
 * NULL with errno 0 at the end. */
static struct dirent *next_entry(DIR *d)
{
    struct dirent *de;

    do {
        errno = 0;
        // cppcheck-suppress readdirCalled ; readdir_r is deprecated (glibc 2.24); this DIR is not shared
        de = readdir(d);
    } while (!de && errno == EINTR);
    return de;
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
    int r = 0;

    d = open_listing(s, &r);
    if (!d)
        return r;
    while ((de = next_entry(d))) {
        uint64_t seq;

        /* Dot files include fsutil_write_atomic()'s temporary files. */
        if (de->d_name[0] == '.' || !parse_name(de->d_name, &seq))
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
        /* One that vanished meanwhile is not listed. */
        if (inspect(s, de->d_name, &entries[count]) == 1)
            continue;
        if (seq > newest)
            newest = seq;
        count++;
    }
    if (errno != 0) {
        r = -errno;
        goto out;
    }
    *ret = NULL;
    if (count > 0) {
        qsort(entries, count, sizeof(*entries), compare_entries);
        *ret = entries;
        entries = NULL;
    }
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
    return scan(s, ret, ret_count, NULL);
}

/* The path of an event: only names we could have made, never "../" or a
 * foreign file. */
static int entry_path(const struct spool *s, const struct spool_entry *e, char **ret)
{
    uint64_t seq;

    if (!parse_name(e->name, &seq))
        return -EINVAL;
    *ret = path_in(s->path, e->name);
    return *ret ? 0 : -ENOMEM;
}

int spool_read(struct spool *s, const struct spool_entry *e, char **ret_json, size_t *ret_len)
{
    CLEANUP_FREE char *path = NULL;
    int r = entry_path(s, e, &path);

    return r < 0 ? r : fsutil_read_file(path, SPOOL_MAX_EVENT_BYTES, true, ret_json, ret_len, NULL);
}

int spool_remove(struct spool *s, const struct spool_entry *e)
{
    CLEANUP_FREE char *path = NULL;
    int r = entry_path(s, e, &path);

    return r < 0 ? r : fsutil_remove_durable(path);
}

/* A file we failed to delete or move may be gone all the same (the unlink
 * done, the sync of the directory failed): only one seen still in place
 * is not counted, so a failure can over-count, never hide a loss. */
static bool still_there(const struct spool *s, const char *name)
{
    struct stat st;

    return TEMP_FAILURE_RETRY(fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW)) == 0;
}

/* A set-aside directory, made on demand: ours, private, never a
 * symlink. */
static int open_aside(const struct spool *s, const char *dir, int *ret_fd)
{
    int fd, r;

    if (TEMP_FAILURE_RETRY(mkdirat(s->dirfd, dir, 0700)) < 0 && errno != EEXIST)
        return -errno;
    fd = TEMP_FAILURE_RETRY(openat(s->dirfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd < 0)
        return -errno;
    /* The same trust as the spool directory itself. */
    r = check_trusted(fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int spool_set_aside(struct spool *s, const struct spool_entry *e, enum spool_counter c, int *ret_sync_error)
{
    struct counter *k;
    uint64_t seq;
    int qfd = -1, q, d, r;

    if (ret_sync_error)
        *ret_sync_error = 0;
    if (!aside_dirs[c] || !parse_name(e->name, &seq))
        return -EINVAL;
    k = &s->counters[c];
    r = open_aside(s, aside_dirs[c], &qfd);
    if (r < 0)
        return r;
    /* Counted before it moves: not counted, not moved. */
    r = write_counter(s, c, k->value + 1);
    if (r < 0)
        goto out;
    if (TEMP_FAILURE_RETRY(renameat(s->dirfd, e->name, qfd, e->name)) < 0) {
        r = -errno;
        /* Still in place: the counter goes back, or stays one over. */
        if (!still_there(s, e->name) || write_counter(s, c, k->value) < 0)
            k->value++;
        goto out;
    }
    k->value++;
    /* Both directories, whatever the first one said: the new name and the
     * old one's removal. */
    q = TEMP_FAILURE_RETRY(fsync(qfd)) < 0 ? -errno : 0;
    d = TEMP_FAILURE_RETRY(fsync(s->dirfd)) < 0 ? -errno : 0;
    if (ret_sync_error)
        *ret_sync_error = q ? q : d;
    r = 0;
out:
    close(qfd);
    return r;
}

int spool_clear_count(struct spool *s, enum spool_counter c, uint64_t reported, bool unknown_reported)
{
    struct counter *k = &s->counters[c];
    uint64_t left;
    int r;

    if (reported > 0) {
        left = k->value > reported ? k->value - reported : 0;
        r = write_counter(s, c, left);
        if (r < 0)
            return r;
        k->value = left;
    }
    if (unknown_reported && k->unknown) {
        CLEANUP_FREE char *marker = path_in(s->path, unknown_files[c]);

        r = marker ? fsutil_remove_durable(marker) : -ENOMEM;
        if (r < 0 && r != -ENOENT)
            return r;
        k->unknown = false;
    }
    return 0;
}


/* Deletes the oldest usable events until the bounds hold with the one
 * just written (new_len bytes) counted in. Best effort: the new event is
 * already safe, and a spool left over its bound is trimmed next time. */
static void enforce_bounds(struct spool *s, const struct spool_entry *entries, size_t count,
                           size_t new_len)
{
    struct counter *k = &s->counters[SPOOL_COUNTER_DROPPED];
    uint64_t total = new_len, victims = 0, removed = 0;
    size_t usable = 1, cut = 0;

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
    if (write_counter(s, SPOOL_COUNTER_DROPPED, k->value + victims) < 0)
        return;
    for (size_t i = 0; i < cut; i++) {
        CLEANUP_FREE char *path = NULL;

        if (entries[i].error != 0 || entry_path(s, &entries[i], &path) < 0)
            continue;
        if (fsutil_remove_durable(path) == 0 || !still_there(s, entries[i].name))
            removed++;
    }
    /* Lowered only to what is gone: some victims are still here. */
    if (removed != victims && write_counter(s, SPOOL_COUNTER_DROPPED, k->value + removed) < 0) {
        k->value += victims; /* what the file says: an over-count, kept */
        return;
    }
    k->value += removed;
}

/* The name of a new event, sorting after every one there (newest). */
static int new_name(const char *event_id, uint64_t newest, char *name, size_t size)
{
    /* Wall-clock time orders events across runs; bumping past the newest
     * keeps the order strict even when the clock went back (an RTC reset
     * at boot, before NTP). */
    uint64_t seq = clock_realtime_ns();

    if (seq <= newest) {
        if (newest == UINT64_MAX)
            return -EOVERFLOW;
        seq = newest + 1;
    }
    if ((size_t)snprintf(name, size, "%0*" PRIu64 "-%s" SUFFIX, SEQ_DIGITS, seq, event_id) >= size)
        return -ENAMETOOLONG;
    return 0;
}

int spool_put(struct spool *s, const char *event_id, const char *json, size_t len, int *ret_sync_error)
{
    struct spool_entry *entries = NULL;
    char name[NAME_LEN + 1];
    CLEANUP_FREE char *path = NULL;
    size_t count = 0;
    uint64_t newest = 0;
    int r;

    if (ret_sync_error)
        *ret_sync_error = 0;
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

    r = new_name(event_id, newest, name, sizeof(name));
    if (r < 0)
        goto out;
    path = path_in(s->path, name);
    r = path ? fsutil_write_atomic(path, json ? json : "", len, 0600) : -ENOMEM;
    /* The name is new: if it is there, only the sync of the directory
     * after the rename failed. The event is spooled, if not durably. */
    if (r < 0 && !still_there(s, name))
        goto out;
    if (r < 0 && ret_sync_error)
        *ret_sync_error = r;

    enforce_bounds(s, entries, count, len);
    r = 0;
out:
    free(entries);
    return r;
}

/* Counts our event files in dir, by name only (nothing is opened). */
static int count_events(const char *dir, uint64_t *ret)
{
    int r = 0;
    DIR *d = listing_of(TEMP_FAILURE_RETRY(open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)), &r);
    struct dirent *de;
    uint64_t seq;

    if (!d)
        return r;
    *ret = 0;
    while ((de = next_entry(d)))
        *ret += parse_name(de->d_name, &seq);
    closedir(d);
    return 0;
}

int spool_peek(const char *dir, struct spool_figures *ret)
{
    int r = count_events(dir, &ret->waiting);

    if (r == -ENOENT) { /* nothing spooled yet */
        ret->waiting = 0;
        r = 0;
    }
    if (r < 0)
        return r;
    for (int c = 0; c < SPOOL_COUNTERS; c++)
        ret->count_known[c] = read_counter_in(dir, (enum spool_counter)c, &ret->count[c]) == 0;
    return 0;
}

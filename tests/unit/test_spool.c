/* The spool of undelivered events, on a scratch directory. */
#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "helpers.h"
#include "isolate.h"
#include "spool.h"

TestSuite(spool, .init = scratch_make, .fini = scratch_remove, .timeout = 30);

static char *path_of(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", scratch(), name);
    return p;
}

/* The counter of events the bounds pushed out, and its clearing after a report carried it. */
static uint64_t dropped(const struct spool *s)
{
    return spool_count(s, SPOOL_COUNTER_DROPPED);
}

static int clear_dropped(struct spool *s, uint64_t reported)
{
    return spool_clear_count(s, SPOOL_COUNTER_DROPPED, reported, false);
}

/* A distinct valid id per n. */
static const char *uuid(unsigned n)
{
    static char buf[8][37];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 37, "%08x-0000-4000-8000-%012x", n, n);
    return p;
}

/* Names in where (dot files only, with dots_only), "." and ".." aside. */
static size_t count_names(const char *where, bool dots_only)
{
    DIR *d = opendir(where);
    size_t n = 0;

    cr_assert_not_null(d, "%s", where);
    for (struct dirent *de; (de = readdir(d));)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 && (!dots_only || de->d_name[0] == '.');
    closedir(d);
    return n;
}

static void put_ok(struct spool *s, unsigned n, size_t len)
{
    char body[512];
    cr_assert_lt(len, sizeof(body));
    memset(body, 'a' + (char)(n % 26), len);
    body[len] = '\0';
    cr_assert_eq(spool_put(s, uuid(n), body, len, NULL), 0, "put %u", n);
}

/* The entries listed, which must be count. */
static struct spool_entry *list_expecting(struct spool *s, size_t count)
{
    struct spool_entry *e = NULL;
    size_t n = 99;

    cr_assert_eq(spool_list(s, &e, &n), 0);
    cr_assert_eq(n, count, "listed %zu, want %zu", n, count);
    cr_assert(count == 0 || e != NULL);
    return e;
}

/* The ids listed, in order. */
static void expect_ids(struct spool *s, const unsigned *want, size_t count)
{
    struct spool_entry *e = list_expecting(s, count);

    for (size_t i = 0; i < count; i++) {
        cr_expect_eq(e[i].error, 0);
        cr_expect_str_eq(e[i].id, uuid(want[i]), "entry %zu", i);
    }
    free(e);
}

Test(spool, put_list_read_oldest_first)
{
    struct spool *s = NULL;
    struct spool_entry *e;
    char *json = NULL;
    struct stat st;
    size_t len;

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_assert_eq(spool_put(s, uuid(1), "{\"n\":1}", 7, NULL), 0);
    cr_assert_eq(spool_put(s, uuid(2), "{\"n\":2}", 7, NULL), 0);
    cr_assert_eq(spool_put(s, uuid(3), "{\"n\":3}", 7, NULL), 0);
    expect_ids(s, (const unsigned[]){ 1, 2, 3 }, 3);

    e = list_expecting(s, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_expect_eq(strlen(e[i].name), 62);
        cr_expect_eq(e[i].bytes, 7);
        if (i > 0)
            cr_expect_lt(strcmp(e[i - 1].name, e[i].name), 0);
    }
    cr_assert_eq(spool_read(s, &e[1], &json, &len), 0);
    cr_expect_eq(len, 7);
    cr_expect_str_eq(json, "{\"n\":2}");
    free(json);
    cr_assert_eq(stat(path_of(e[0].name), &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600);
    free(e);

    cr_expect_eq(count_names(scratch(), true), 0, "no temporary file left behind");
    cr_expect_eq(dropped(s), 0);
    spool_close(s);
}

Test(spool, order_holds_across_runs_and_a_clock_gone_back)
{
    struct spool *s = NULL;
    /* A file from the "future" (the clock was ahead, then reset). */
    char future[128];

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    put_ok(s, 1, 10);
    spool_close(s);

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    put_ok(s, 2, 10);
    spool_close(s);

    snprintf(future, sizeof(future), "18000000000000000000-%s.json", uuid(3));
    cr_assert_eq(fsutil_write_atomic(path_of(future), "{}", 2, 0600), 0);

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    put_ok(s, 4, 10);
    expect_ids(s, (const unsigned[]){ 1, 2, 3, 4 }, 4);
    spool_close(s);
}

Test(spool, count_bound_drops_oldest_and_counts_them)
{
    struct spool *s = NULL;

    cr_assert_eq(spool_open(scratch(), 3, 1 << 20, &s), 0);
    for (unsigned i = 1; i <= 5; i++)
        put_ok(s, i, 20);
    expect_ids(s, (const unsigned[]){ 3, 4, 5 }, 3);
    cr_expect_eq(dropped(s), 2);
    spool_close(s);

    /* The counter outlives the run... */
    cr_assert_eq(spool_open(scratch(), 3, 1 << 20, &s), 0);
    cr_expect_eq(dropped(s), 2);
    /* ...drops after the report was built stay counted... */
    put_ok(s, 6, 20);
    put_ok(s, 7, 20);
    expect_ids(s, (const unsigned[]){ 5, 6, 7 }, 3);
    cr_expect_eq(dropped(s), 4);
    cr_assert_eq(clear_dropped(s, 2), 0);
    cr_expect_eq(dropped(s), 2);
    spool_close(s);

    /* ...and what was reported is gone for good. */
    cr_assert_eq(spool_open(scratch(), 3, 1 << 20, &s), 0);
    cr_expect_eq(dropped(s), 2);
    cr_assert_eq(clear_dropped(s, 2), 0);
    cr_expect_eq(dropped(s), 0);
    spool_close(s);
    cr_assert_eq(spool_open(scratch(), 3, 1 << 20, &s), 0);
    cr_expect_eq(dropped(s), 0);
    spool_close(s);
}

Test(spool, byte_bound_drops_oldest_and_refuses_what_cannot_fit)
{
    struct spool *s = NULL;
    char big[200];

    cr_assert_eq(spool_open(scratch(), 100, 100, &s), 0);
    put_ok(s, 1, 40);
    put_ok(s, 2, 40);
    put_ok(s, 3, 40); /* 120 > 100: 1 goes */
    expect_ids(s, (const unsigned[]){ 2, 3 }, 2);
    cr_expect_eq(dropped(s), 1);

    /* Alone over the bound: refused, nothing dropped for it. */
    memset(big, 'x', sizeof(big));
    cr_expect_eq(spool_put(s, uuid(9), big, 101, NULL), -EFBIG);
    expect_ids(s, (const unsigned[]){ 2, 3 }, 2);
    cr_expect_eq(dropped(s), 1);

    /* Exactly the bound: everything older goes. */
    put_ok(s, 4, 100);
    expect_ids(s, (const unsigned[]){ 4 }, 1);
    cr_expect_eq(dropped(s), 3);
    spool_close(s);
}

Test(spool, event_over_the_size_cap_is_refused)
{
    struct spool *s = NULL;
    size_t len = SPOOL_MAX_EVENT_BYTES + 1;
    char *big = malloc(len);

    cr_assert_not_null(big);
    memset(big, 'x', len);
    cr_assert_eq(spool_open(scratch(), 10, UINT64_MAX, &s), 0);
    cr_expect_eq(spool_put(s, uuid(1), big, len, NULL), -EFBIG);
    cr_expect_eq(spool_put(s, uuid(1), big, len - 1, NULL), 0);
    spool_close(s);
    free(big);
}

Test(spool, ids_must_be_lowercase_uuids)
{
    static const char *const bad[] = {
        "", "../../../etc/passwd", "00000001-0000-4000-8000-00000000000",
        "00000001-0000-4000-8000-0000000000011", "00000001-0000-4000-8000-00000000000A",
        "00000001-0000-4000-8000/000000000001", "000000010000-4000-8000-0000000000001",
        "00000001-0000-4000-8000-00000000000g",
    };
    struct spool *s = NULL;

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(spool_put(s, bad[i], "{}", 2, NULL), -EINVAL, "%s", bad[i]);
    cr_expect_eq(spool_put(s, NULL, "{}", 2, NULL), -EINVAL);
    cr_expect_eq(count_names(scratch(), false), 0);
    spool_close(s);
}

Test(spool, same_id_is_kept_once)
{
    struct spool *s = NULL;
    struct spool_entry *e;
    char *json = NULL;
    size_t len;

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_assert_eq(spool_put(s, uuid(1), "first", 5, NULL), 0);
    cr_assert_eq(spool_put(s, uuid(1), "again", 5, NULL), 0);
    e = list_expecting(s, 1);
    cr_assert_eq(spool_read(s, &e[0], &json, &len), 0);
    cr_expect_str_eq(json, "first");
    free(json);
    free(e);
    spool_close(s);
}

Test(spool, remove_deletes_only_named_events)
{
    struct spool *s = NULL;
    struct spool_entry *e, bogus;

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    put_ok(s, 1, 5);
    put_ok(s, 2, 5);
    e = list_expecting(s, 2);
    cr_assert_eq(spool_remove(s, &e[0]), 0);
    cr_expect_eq(spool_remove(s, &e[0]), -ENOENT);
    free(e);
    expect_ids(s, (const unsigned[]){ 2 }, 1);

    cr_assert_eq(fsutil_write_atomic(path_of("keep.txt"), "x", 1, 0600), 0);
    memset(&bogus, 0, sizeof(bogus));
    snprintf(bogus.name, sizeof(bogus.name), "keep.txt");
    cr_expect_eq(spool_remove(s, &bogus), -EINVAL);
    snprintf(bogus.name, sizeof(bogus.name), "../%s", strrchr(scratch(), '/') + 1);
    cr_expect_eq(spool_remove(s, &bogus), -EINVAL);
    cr_expect_eq(access(path_of("keep.txt"), F_OK), 0);
    spool_close(s);
}

Test(spool, foreign_and_temporary_files_are_ignored_and_kept)
{
    static const char *const foreign[] = {
        "notes.txt",
        ".hidden.json",
        ".shmprov-tmp.00000000000000000001-00000001-0000-4000-8000-000000000001.json.1234abcd",
        "00000000000000000001-00000001-0000-4000-8000-000000000001.json~",
        "0000000000000000001-00000001-0000-4000-8000-000000000001.json",
        "99999999999999999999-00000001-0000-4000-8000-000000000001.json", /* > 2^64 */
        "00000000000000000001-00000001-0000-4000-8000-00000000000A.json",
        "00000000000000000001_00000001-0000-4000-8000-000000000001.json",
    };
    const size_t nforeign = sizeof(foreign) / sizeof(foreign[0]);
    struct spool *s = NULL;

    for (size_t i = 0; i < nforeign; i++)
        cr_assert_eq(fsutil_write_atomic(path_of(foreign[i]), "{}", 2, 0600), 0, "%s", foreign[i]);
    cr_assert_eq(spool_open(scratch(), 1, 1 << 20, &s), 0);
    cr_expect_null(list_expecting(s, 0));

    /* Bounds of 1: two puts, one event dropped, every foreign file kept. */
    put_ok(s, 6, 10);
    put_ok(s, 7, 10);
    expect_ids(s, (const unsigned[]){ 7 }, 1);
    cr_expect_eq(dropped(s), 1);
    for (size_t i = 0; i < nforeign; i++)
        cr_expect_eq(access(path_of(foreign[i]), F_OK), 0, "%s kept", foreign[i]);
    spool_close(s);
}

Test(spool, symlinks_fifos_and_oversized_files_are_listed_unusable_and_kept)
{
    struct spool *s = NULL;
    struct spool_entry *e;
    char link_name[128], fifo_name[128], big_name[128], *json = NULL;
    size_t len;
    struct timespec t0, t1;
    int fd;

    snprintf(link_name, sizeof(link_name), "00000000000000000001-%s.json", uuid(1));
    snprintf(fifo_name, sizeof(fifo_name), "00000000000000000002-%s.json", uuid(2));
    snprintf(big_name, sizeof(big_name), "00000000000000000003-%s.json", uuid(3));
    cr_assert_eq(fsutil_write_atomic(path_of("secret"), "{\"secret\":1}", 12, 0600), 0);
    cr_assert_eq(symlink(path_of("secret"), path_of(link_name)), 0);
    cr_assert_eq(mkfifo(path_of(fifo_name), 0600), 0);
    fd = open(path_of(big_name), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, SPOOL_MAX_EVENT_BYTES + 1), 0);
    close(fd);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(spool_open(scratch(), 1, 1 << 20, &s), 0);
    e = list_expecting(s, 3);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_expect_lt(t1.tv_sec - t0.tv_sec, 2, "a FIFO never blocks the listing");
    cr_expect_eq(e[0].error, -ELOOP);
    cr_expect_str_eq(e[0].name, link_name);
    cr_expect_eq(e[1].error, -EINVAL);
    cr_expect_str_eq(e[1].name, fifo_name);
    cr_expect_eq(e[2].error, -EFBIG);
    cr_expect_str_eq(e[2].name, big_name);
    cr_expect_eq(spool_read(s, &e[0], &json, &len), -ELOOP, "never read through the symlink");
    cr_expect_null(json);
    cr_expect_eq(spool_read(s, &e[1], &json, &len), -EINVAL);
    cr_expect_eq(spool_read(s, &e[2], &json, &len), -EFBIG);
    free(e);

    /* They neither count against the bounds nor get dropped by them, and
     * a new event still sorts after them. */
    put_ok(s, 4, 10);
    put_ok(s, 5, 10);
    cr_expect_eq(dropped(s), 1);
    e = list_expecting(s, 4);
    cr_expect_eq(e[3].error, 0);
    cr_expect_str_eq(e[3].id, uuid(5));
    free(e);
    cr_expect_eq(access(path_of("secret"), F_OK), 0);
    spool_close(s);
}

Test(spool, unreadable_event_is_listed_unusable)
{
    struct spool *s = NULL;
    struct spool_entry *e = NULL;
    char name[128];
    size_t n;

    snprintf(name, sizeof(name), "00000000000000000001-%s.json", uuid(1));
    cr_assert_eq(fsutil_write_atomic(path_of(name), "{}", 2, 0000), 0);
    /* Root reads anything: become nobody, with the directory still
     * searchable but the file not readable. */
    cr_assert_eq(chmod(scratch(), 0711), 0);
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    /* Only the effective id changes, so the scratch directory can still
     * be removed afterwards. */
    if (geteuid() == 0)
        cr_assert_eq(setresuid((uid_t)-1, 65534, 0), 0);
    cr_assert_eq(spool_list(s, &e, &n), 0);
    if (getuid() == 0)
        cr_assert_eq(setresuid((uid_t)-1, 0, 0), 0);
    cr_assert_eq(n, 1);
    cr_expect_eq(e[0].error, -EACCES);
    free(e);
    spool_close(s);
}

Test(spool, directory_is_made_private_and_must_be_trusted)
{
    struct spool *s = NULL;
    char deep[200];
    struct stat st;

    snprintf(deep, sizeof(deep), "%s/var/lib/shmprov/spool/", scratch());
    cr_assert_eq(spool_open(deep, 10, 1 << 20, &s), 0);
    cr_expect_str_eq(spool_path(s), path_of("var/lib/shmprov/spool"));
    spool_close(s);
    cr_assert_eq(stat(path_of("var/lib/shmprov/spool"), &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    cr_assert_eq(stat(path_of("var/lib"), &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);

    /* A symlinked spool directory, with or without a trailing slash. */
    cr_assert_eq(symlink(path_of("var/lib/shmprov/spool"), path_of("link")), 0);
    cr_expect_eq(spool_open(path_of("link"), 10, 1 << 20, &s), -ELOOP);
    cr_expect_eq(spool_open(path_of("link//"), 10, 1 << 20, &s), -ELOOP);

    /* Writable by others: they could plant or delete events. */
    cr_assert_eq(chmod(path_of("var/lib/shmprov/spool"), 0770), 0);
    cr_expect_eq(spool_open(path_of("var/lib/shmprov/spool"), 10, 1 << 20, &s), -EPERM);
    cr_assert_eq(chmod(path_of("var/lib/shmprov/spool"), 0755), 0);
    cr_expect_eq(spool_open(path_of("var/lib/shmprov/spool"), 10, 1 << 20, &s), 0);
    spool_close(s);

    /* A file where the directory should be. */
    cr_assert_eq(fsutil_write_atomic(path_of("file"), "x", 1, 0600), 0);
    cr_expect_eq(spool_open(path_of("file"), 10, 1 << 20, &s), -ENOTDIR);

    cr_expect_eq(spool_open(scratch(), 0, 1 << 20, &s), -EINVAL);
    cr_expect_eq(spool_open(scratch(), 10, 0, &s), -EINVAL);
    spool_close(NULL);
}

static void expect_file(const char *name, const char *want)
{
    char *got = NULL;
    size_t len;

    cr_assert_eq(fsutil_read_file(path_of(name), 64, true, &got, &len, NULL), 0, "%s readable", name);
    cr_expect_str_eq(got, want, "%s", name);
    free(got);
}

Test(spool, damaged_counter_is_a_warning_and_makes_the_count_unknown)
{
    static const char *const bad[] = { "", "abc\n", "-1\n", " 1\n", "1x\n", "99999999999999999999999\n", "1\n\n",
                                       "\x7f" "ELF\x01\xff" };
    static const char *const files[] = { SPOOL_DROPPED_FILE, SPOOL_QUARANTINED_FILE, SPOOL_REJECTED_FILE };
    struct spool *s = NULL;
    int rewrite = -1;

    for (enum spool_counter c = 0; c < SPOOL_COUNTERS; c++) {
        enum spool_counter other = (c + 1) % SPOOL_COUNTERS;
        char marker[64];

        snprintf(marker, sizeof(marker), "%s" SPOOL_UNKNOWN_SUFFIX, files[c]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            cr_assert_eq(fsutil_write_atomic(path_of(files[c]), bad[i], strlen(bad[i]), 0600), 0);
            cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0, "%s \"%s\" does not fail the spool", files[c],
                         bad[i]);
            cr_expect_eq(spool_counter_damaged(s, c, &rewrite), -EBADMSG, "\"%s\"", bad[i]);
            cr_expect_eq(rewrite, 0);
            cr_expect(spool_count_unknown(s, c));
            cr_expect_eq(spool_count(s, c), 0);
            cr_expect_eq(spool_counter_damaged(s, other, NULL), 0, "the others are fine");
            cr_expect_not(spool_count_unknown(s, other));
            spool_close(s);
            expect_file(files[c], "0\n");
            cr_expect_eq(access(path_of(marker), F_OK), 0, "the marker keeps 'unknown'");
        }
        /* Rewritten: the next run finds no damage, yet the count stays
         * unknown until a delivered report has said so. */
        cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
        cr_expect_eq(spool_counter_damaged(s, c, NULL), 0);
        cr_expect(spool_count_unknown(s, c));
        cr_assert_eq(spool_clear_count(s, c, 0, true), 0);
        cr_expect_not(spool_count_unknown(s, c));
        spool_close(s);
        cr_expect_neq(access(path_of(marker), F_OK), 0);
        cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
        cr_expect_not(spool_count_unknown(s, c));
        spool_close(s);
    }
}

Test(spool, damaged_counter_still_counts_drops_from_zero)
{
    struct spool *s = NULL;

    cr_assert_eq(fsutil_write_atomic(path_of(SPOOL_DROPPED_FILE), "garbage", 7, 0600), 0);
    cr_assert_eq(spool_open(scratch(), 1, 1 << 20, &s), 0);
    put_ok(s, 1, 10);
    put_ok(s, 2, 10);
    cr_expect_eq(dropped(s), 1);
    cr_expect(spool_count_unknown(s, SPOOL_COUNTER_DROPPED));
    spool_close(s);
    expect_file(SPOOL_DROPPED_FILE, "1\n");
}

Test(spool, unreadable_counter_is_a_warning_too)
{
    struct spool *s = NULL;
    int rewrite = 0;

    /* A directory where the counter should be: unreadable, and in the way
     * of the rewrite too. */
    cr_assert_eq(mkdir(path_of(SPOOL_DROPPED_FILE), 0700), 0);
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_expect_eq(spool_counter_damaged(s, SPOOL_COUNTER_DROPPED, &rewrite), -EISDIR);
    cr_expect_eq(rewrite, -EEXIST);
    cr_expect(spool_count_unknown(s, SPOOL_COUNTER_DROPPED));
    put_ok(s, 1, 10);
    spool_close(s);
}

Test(spool, good_counter_is_read_and_cleared)
{
    struct spool *s = NULL;

    cr_assert_eq(fsutil_write_atomic(path_of(SPOOL_DROPPED_FILE), "42\n", 3, 0600), 0);
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_expect_eq(spool_counter_damaged(s, SPOOL_COUNTER_DROPPED, NULL), 0);
    cr_expect_not(spool_count_unknown(s, SPOOL_COUNTER_DROPPED));
    cr_expect_eq(dropped(s), 42);
    cr_expect_eq(clear_dropped(s, 0), 0);
    cr_expect_eq(clear_dropped(s, 100), 0, "more than counted clears to 0");
    cr_expect_eq(dropped(s), 0);
    spool_close(s);
}

/* Fault injection: this executable's unlinkat(), renameat() and fsync()
 * take the place of libc's for the code under test. Once armed, the fsync
 * that follows the unlink (or the rename into place) of an event fails, as
 * a directory sync on a failing disk does: the change is made, the call
 * says it failed. */
static enum sync_fault { SYNC_OK, SYNC_FAILS_AFTER_UNLINK, SYNC_FAILS_AFTER_RENAME } sync_fault;
static int fail_next_sync;

/* Returns r, arming the next fsync to fail when that syscall changed the event name under fault. */
static int arm_after(long r, enum sync_fault fault, const char *name)
{
    size_t len = strlen(name);

    if (r == 0 && sync_fault == fault && name[0] != '.' && len > 5 && strcmp(name + len - 5, ".json") == 0)
        fail_next_sync = 1;
    return (int)r;
}

int unlinkat(int dirfd, const char *name, int flags)
{
    return arm_after(syscall(SYS_unlinkat, dirfd, name, flags), SYNC_FAILS_AFTER_UNLINK, name);
}

int renameat(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
    return arm_after(syscall(SYS_renameat2, olddirfd, oldname, newdirfd, newname, 0), SYNC_FAILS_AFTER_RENAME, newname);
}

int fsync(int fd)
{
    if (fail_next_sync) {
        fail_next_sync = 0;
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

Test(spool, a_drop_whose_sync_failed_is_still_counted)
{
    struct spool *s = NULL;

    cr_assert_eq(spool_open(scratch(), 1, 1 << 20, &s), 0);
    put_ok(s, 1, 10);
    sync_fault = SYNC_FAILS_AFTER_UNLINK;
    put_ok(s, 2, 10); /* 1 is deleted, and the delete "fails" */
    sync_fault = SYNC_OK;
    expect_ids(s, (const unsigned[]){ 2 }, 1);
    cr_expect_eq(dropped(s), 1, "a victim that is gone is dropped, whatever the call said");
    spool_close(s);
    expect_file(SPOOL_DROPPED_FILE, "1\n");
}

Test(spool, an_event_renamed_into_place_is_spooled_even_if_the_sync_failed)
{
    struct spool *s = NULL;
    struct spool_entry *e;
    int sync_error = 0;

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    sync_fault = SYNC_FAILS_AFTER_RENAME;
    cr_expect_eq(spool_put(s, uuid(1), "{}", 2, &sync_error), 0, "it is there: it will be sent");
    sync_fault = SYNC_OK;
    cr_expect_eq(sync_error, -EIO, "but the caller hears why it may not survive a crash");
    expect_ids(s, (const unsigned[]){ 1 }, 1);

    /* The same for a move to quarantine: moved, counted, and said so. */
    e = list_expecting(s, 1);
    sync_fault = SYNC_FAILS_AFTER_RENAME;
    cr_expect_eq(spool_set_aside(s, &e[0], SPOOL_COUNTER_QUARANTINED, &sync_error), 0);
    sync_fault = SYNC_OK;
    cr_expect_eq(sync_error, -EIO);
    cr_expect_eq(spool_count(s, SPOOL_COUNTER_QUARANTINED), 1);
    expect_ids(s, NULL, 0);
    free(e);
    spool_close(s);
}

/* An event as a killed writer without fsutil_write_atomic() would leave it. */
static void plant(unsigned seq, unsigned n, const char *body, char *name, size_t size)
{
    snprintf(name, size, "%020u-%s.json", seq, uuid(n));
    cr_assert_eq(fsutil_write_atomic(path_of(name), body, strlen(body), 0600), 0);
}

Test(spool, quarantine_moves_counts_and_stops_listing)
{
    struct spool *s = NULL;
    struct spool_entry *e;
    char cut[128], good[128], moved[300];
    int sync_error = -1;
    struct stat st;

    plant(1, 1, "{\"specversion\":\"1.0\",\"id\":\"", cut, sizeof(cut));
    plant(2, 2, "{\"n\":2}", good, sizeof(good));
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    e = list_expecting(s, 2);
    cr_assert_str_eq(e[0].name, cut);
    cr_assert_eq(spool_set_aside(s, &e[0], SPOOL_COUNTER_QUARANTINED, &sync_error), 0);
    cr_expect_eq(sync_error, 0);
    free(e);

    snprintf(moved, sizeof(moved), SPOOL_QUARANTINE_DIR "/%s", cut);
    cr_expect_neq(access(path_of(cut), F_OK), 0, "gone from the spool");
    expect_file(moved, "{\"specversion\":\"1.0\",\"id\":\"");
    cr_assert_eq(stat(path_of(SPOOL_QUARANTINE_DIR), &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    cr_expect_eq(spool_count(s, SPOOL_COUNTER_QUARANTINED), 1);
    expect_ids(s, (const unsigned[]){ 2 }, 1);
    spool_close(s);

    /* The count outlives the run, the quarantined file is never listed,
     * and only what a report carried is cleared. */
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_expect_eq(spool_count(s, SPOOL_COUNTER_QUARANTINED), 1);
    expect_ids(s, (const unsigned[]){ 2 }, 1);
    e = list_expecting(s, 1);
    cr_assert_eq(spool_set_aside(s, &e[0], SPOOL_COUNTER_QUARANTINED, NULL), 0);
    free(e);
    cr_expect_eq(spool_count(s, SPOOL_COUNTER_QUARANTINED), 2);
    cr_assert_eq(spool_clear_count(s, SPOOL_COUNTER_QUARANTINED, 1, false), 0);
    spool_close(s);
    expect_file(SPOOL_QUARANTINED_FILE, "1\n");
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    expect_ids(s, NULL, 0);
    cr_expect_eq(spool_count(s, SPOOL_COUNTER_QUARANTINED), 1);
    spool_close(s);
}

Test(spool, quarantine_that_cannot_move_or_count_leaves_the_event_uncounted)
{
    struct spool *s = NULL;
    struct spool_entry *e;
    char name[128];

    plant(1, 1, "{", name, sizeof(name));
    /* A symlink as the quarantine directory: never followed. */
    cr_assert_eq(mkdir(path_of("elsewhere"), 0700), 0);
    cr_assert_eq(symlink(path_of("elsewhere"), path_of(SPOOL_QUARANTINE_DIR)), 0);
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    e = list_expecting(s, 1);
    cr_expect_lt(spool_set_aside(s, &e[0], SPOOL_COUNTER_QUARANTINED, NULL), 0);
    cr_expect_eq(access(path_of(name), F_OK), 0, "left in place");
    cr_expect_eq(count_names(path_of("elsewhere"), false), 0);
    cr_expect_eq(spool_count(s, SPOOL_COUNTER_QUARANTINED), 0);
    spool_close(s);
    cr_assert_eq(unlink(path_of(SPOOL_QUARANTINE_DIR)), 0);

    /* A counter that cannot be written: not counted, not moved. */
    cr_assert_eq(mkdir(path_of(SPOOL_QUARANTINED_FILE), 0700), 0);
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_expect_lt(spool_set_aside(s, &e[0], SPOOL_COUNTER_QUARANTINED, NULL), 0);
    cr_expect_eq(access(path_of(name), F_OK), 0, "left in place");
    free(e);
    spool_close(s);
}

Test(spool, stale_temporary_files_of_a_killed_run_are_removed)
{
    const char *old = ".shmprov-tmp.00000000000000000001-00000001-0000-4000-8000-000000000001.json.0000dead";
    const char *fresh = ".shmprov-tmp.00000000000000000002-00000002-0000-4000-8000-000000000002.json.0000beef";
    struct timespec times[2] = { { .tv_sec = time(NULL) - 3600 }, { .tv_sec = time(NULL) - 3600 } };
    struct spool *s = NULL;

    cr_assert_eq(fsutil_write_atomic(path_of(old), "{", 1, 0600), 0);
    cr_assert_eq(fsutil_write_atomic(path_of(fresh), "{", 1, 0600), 0);
    cr_assert_eq(utimensat(AT_FDCWD, path_of(old), times, 0), 0);
    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    cr_expect_neq(access(path_of(old), F_OK), 0, "an hour-old temp file is a dead run's");
    cr_expect_eq(access(path_of(fresh), F_OK), 0, "a fresh one may be a live writer's");
    spool_close(s);
}

/* ENOSPC for real: a 64 KiB tmpfs over the scratch directory, in a mount
 * namespace of this test's own (isolate.h). */
Test(spool, full_disk_fails_cleanly)
{
    struct spool *s = NULL;
    size_t len = 100 * 1024;
    char *big;

    isolate(CLONE_NEWNS, "fills a file system");
    isolate_tmpfs(scratch(), "size=64k,mode=0700");

    cr_assert_eq(spool_open(scratch(), 10, 1 << 20, &s), 0);
    put_ok(s, 1, 100);
    big = malloc(len);
    cr_assert_not_null(big);
    memset(big, 'x', len);
    cr_expect_eq(spool_put(s, uuid(2), big, len, NULL), -ENOSPC);
    expect_ids(s, (const unsigned[]){ 1 }, 1);
    cr_expect_eq(count_names(scratch(), true), 0, "no half-written file left");
    cr_expect_eq(dropped(s), 0);
    free(big);
    spool_close(s);
    umount2(scratch(), MNT_DETACH);
}

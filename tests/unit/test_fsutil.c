/* The one atomic-write helper and the lock, on a scratch directory. */
#include <sys/file.h>
#include <sys/stat.h>

#include "helpers.h"
#include "lock.h"

static char *path_of(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", scratch(), name);
    return p;
}

static size_t count_entries(void)
{
    char cmd[256];
    FILE *f;
    size_t n = 0;
    snprintf(cmd, sizeof(cmd), "ls -A %s", scratch());
    f = popen(cmd, "r");
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    pclose(f);
    return n;
}

/* name holds exactly text, with mode. */
static void expect_file(const char *name, const char *text, mode_t mode)
{
    char *buf = NULL;
    size_t len;
    struct stat st;

    cr_assert_eq(fsutil_read_file(path_of(name), 100, true, &buf, &len, &st), 0, "%s", name);
    cr_expect_str_eq(buf, text, "%s", name);
    cr_expect_eq(st.st_mode & 07777, mode, "%s: mode %o", name, st.st_mode & 07777);
    free(buf);
}

TestSuite(fsutil, .init = scratch_make, .fini = scratch_remove);

Test(fsutil, write_atomic_creates_and_replaces_with_mode)
{
    cr_assert_eq(fsutil_write_atomic(path_of("a.conf"), "one\n", 4, 0644), 0);
    expect_file("a.conf", "one\n", 0644);
    cr_assert_eq(fsutil_write_atomic(path_of("a.conf"), "two\n", 4, 0600), 0);
    expect_file("a.conf", "two\n", 0600);
    cr_expect_eq(count_entries(), 1, "no temporary file left behind");
}

Test(fsutil, write_atomic_never_follows_a_symlink)
{
    cr_assert_eq(fsutil_write_atomic(path_of("target"), "precious\n", 9, 0644), 0);
    cr_assert_eq(symlink(path_of("target"), path_of("link.conf")), 0);
    cr_expect_eq(fsutil_write_atomic(path_of("link.conf"), "evil\n", 5, 0644), -ELOOP);
    expect_file("target", "precious\n", 0644);
    cr_expect_eq(fsutil_remove_durable(path_of("link.conf")), -ELOOP);
    cr_expect_eq(count_entries(), 2);
}

Test(fsutil, write_atomic_refuses_a_directory_and_a_missing_parent)
{
    cr_assert_eq(mkdir(path_of("d.conf"), 0755), 0);
    cr_expect_eq(fsutil_write_atomic(path_of("d.conf"), "x", 1, 0644), -EEXIST);
    cr_expect_eq(fsutil_write_atomic(path_of("missing/x.conf"), "x", 1, 0644), -ENOENT);
    cr_expect_eq(fsutil_mkdir_parents(path_of("missing/deeper/x.conf")), 0);
    cr_expect_eq(fsutil_write_atomic(path_of("missing/deeper/x.conf"), "x", 1, 0644), 0);
}

Test(fsutil, mkdir_p_makes_each_missing_directory_with_its_mode)
{
    struct stat st;
    mode_t old = umask(0);

    cr_expect_eq(fsutil_mkdir_p(path_of("p/q/r"), 0700), 0);
    cr_expect_eq(fsutil_mkdir_p(path_of("p/q/r/"), 0700), 0, "an existing directory, trailing slash");
    umask(old);
    cr_assert_eq(stat(path_of("p/q/r"), &st), 0);
    cr_expect(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700, "mode %o", st.st_mode & 07777);
    cr_assert_eq(stat(path_of("p"), &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    cr_expect_eq(fsutil_mkdir_p("", 0700), -EINVAL);
    cr_expect_eq(close(open(path_of("p/file"), O_CREAT | O_WRONLY, 0600)), 0);
    cr_expect_eq(fsutil_mkdir_p(path_of("p/file/sub"), 0700), -ENOTDIR);
}

Test(fsutil, stale_temps_are_removed_and_nothing_else)
{
    char name[128];

    snprintf(name, sizeof(name), "%s60-shmprov.conf.0badf00d", FSUTIL_TEMP_PREFIX);
    cr_assert_eq(fsutil_write_atomic(path_of(name), "left by a killed run", 20, 0600), 0);
    cr_assert_eq(fsutil_write_atomic(path_of("60-shmprov.conf"), "keep", 4, 0644), 0);
    cr_assert_eq(fsutil_write_atomic(path_of("61-other.conf"), "keep", 4, 0644), 0);
    cr_expect_eq(fsutil_remove_stale_temps(path_of("60-shmprov.conf"), 0), 1);
    cr_expect_eq(count_entries(), 2);
    cr_expect_eq(fsutil_remove_stale_temps(path_of("60-shmprov.conf"), 0), 0);
}

Test(fsutil, remove_durable)
{
    cr_assert_eq(fsutil_write_atomic(path_of("x.conf"), "x", 1, 0644), 0);
    cr_expect_eq(fsutil_remove_durable(path_of("x.conf")), 0);
    cr_expect_eq(fsutil_remove_durable(path_of("x.conf")), -ENOENT);
}

Test(fsutil, read_file_bounds_and_types)
{
    char *buf = NULL;
    size_t len;

    cr_assert_eq(fsutil_write_atomic(path_of("big"), "0123456789", 10, 0644), 0);
    cr_expect_eq(fsutil_read_file(path_of("big"), 9, true, &buf, &len, NULL), -EFBIG);
    cr_expect_eq(fsutil_read_file(path_of("big"), 10, true, &buf, &len, NULL), 0);
    free(buf);
    cr_assert_eq(mkfifo(path_of("fifo"), 0600), 0);
    cr_expect_eq(fsutil_read_file(path_of("fifo"), 10, true, &buf, &len, NULL), -EINVAL, "a FIFO never blocks");
    cr_expect_eq(fsutil_read_file(scratch(), 10, true, &buf, &len, NULL), -EISDIR);
    cr_expect_eq(fsutil_read_file("/proc/self/stat", 4096, false, &buf, &len, NULL), 0, "procfs (st_size 0) is read to EOF");
    cr_expect_gt(len, 0);
    free(buf);
}

Test(fsutil, lock_is_exclusive_and_names_the_holder)
{
    struct lock *held = NULL, *other = NULL;
    long holder = -1;
    int fd;

    cr_assert_eq(lock_acquire(path_of("run/apply.lock"), 100, &held, &holder), 0);
    /* A second open file description competes like a second process. */
    fd = open(path_of("run/apply.lock"), O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_expect_eq(flock(fd, LOCK_EX | LOCK_NB), -1);
    close(fd);
    cr_expect_eq(lock_acquire(path_of("run/apply.lock"), 60, &other, &holder), -EWOULDBLOCK);
    cr_expect_eq(holder, (long)getpid());
    lock_release(held);
    cr_expect_eq(lock_acquire(path_of("run/apply.lock"), 60, &other, &holder), 0);
    lock_release(other);
    lock_release(NULL);
}

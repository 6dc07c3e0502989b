/* Namespaces of a test's own: see isolate.h. */
#include "isolate.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

/* step failed with err: skipped when not root, failed when root. */
static void cannot_isolate(const char *step, int err, const char *what)
{
    if (geteuid() != 0)
        cr_skip_test("needs root: %s failed (%s), and this test %s only in namespaces of its own; "
                     "run it as root, as CI does: sudo ctest --test-dir BUILD -R unit",
                     step, strerror(err), what);
    cr_assert_fail("%s failed as root (%s): this test %s only in namespaces of its own, and root must be "
                   "able to make them",
                   step, strerror(err), what);
}

void isolate(int flag, const char *what)
{
    const char *step = flag == CLONE_NEWIPC ? "unshare(CLONE_NEWIPC)"
                       : flag == CLONE_NEWNS ? "unshare(CLONE_NEWNS)"
                                             : "unshare(CLONE_NEWUTS)";

    if (unshare(flag) < 0)
        cannot_isolate(step, errno, what);
    if (flag == CLONE_NEWNS && mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        cannot_isolate("making every mount private", errno, what);
}

void isolate_tmpfs(const char *dir, const char *options)
{
    char what[256];

    (void)snprintf(what, sizeof(what), "mounts a tmpfs over %s", dir);
    if (mount("tmpfs", dir, "tmpfs", 0, options) < 0)
        cannot_isolate("mount -t tmpfs", errno, what);
}

#pragma once
/* Namespaces of a test's own, for the unit tests that create SysV segments,
 * write kernel.shm* limits, take the locks in /run/shmprov, mount or set the
 * node name: each Criterion test runs in a process of its own, so the host
 * never sees what it unshares. Without root the test is skipped; as root it
 * fails, since CI runs as root and must never pass on a skip. */

#include <sched.h> /* CLONE_NEW* */

/* Moves the calling test into a new namespace (CLONE_NEWIPC, CLONE_NEWNS,
 * whose mounts are made private first, or CLONE_NEWUTS). what says what the
 * test does there ("creates real SysV segments"), for the message. */
void isolate(int flag, const char *what);

/* Mounts a tmpfs with options over dir, in the mount namespace isolate()
 * made; the same rules when it cannot. */
void isolate_tmpfs(const char *dir, const char *options);

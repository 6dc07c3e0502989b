#pragma once
/* One shmprov apply at a time on a host: an flock on a file under /run
 * holding the owner's pid, so a waiting instance can name it. */

#define LOCK_DEFAULT_PATH "/run/shmprov/apply.lock"
/* The report spool's own lock: reporting (splay, network deadline) must not
 * hold the apply lock, or every other apply would wait on the network. */
#define LOCK_SPOOL_PATH "/run/shmprov/spool.lock"
#define LOCK_WAIT_MS 10000

struct lock;

/* Takes the lock, waiting at most timeout_ms. Returns 0 and the held lock,
 * -EWOULDBLOCK on timeout with *ret_holder_pid set (0 if unknown), or
 * another negative errno. */
int lock_acquire(const char *path, unsigned timeout_ms, struct lock **ret, long *ret_holder_pid);
void lock_release(struct lock *l); /* NULL is a no-op */

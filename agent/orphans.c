#include "orphans.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

enum orphans_pid_state orphans_pid_state(int64_t pid, bool is_last_pid, const struct shmseg *s)
{
    if (pid == 0)
        return is_last_pid && s->atime == 0 && s->dtime == 0 ? ORPHANS_PID_NEVER : ORPHANS_PID_NOT_VISIBLE;
    if (pid < 0 || pid > INT32_MAX)
        return ORPHANS_PID_NOT_VISIBLE;
    /* EPERM: it exists, owned by someone else. A pid reused by an unrelated
     * process reads as alive too: that only ever keeps a segment. */
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
        return ORPHANS_PID_ALIVE;
    return errno == ESRCH ? ORPHANS_PID_GONE : ORPHANS_PID_NOT_VISIBLE;
}

const char *orphans_pid_state_name(enum orphans_pid_state state)
{
    static const char *const names[] = { "alive", "gone", "never attached", "not visible here" };

    return state <= ORPHANS_PID_NOT_VISIBLE ? names[state] : names[ORPHANS_PID_NOT_VISIBLE];
}

static bool is_orphan(const struct shmseg *s, enum orphans_pid_state creator, enum orphans_pid_state last)
{
    return s->nattch == 0 && !(s->mode & SHMSEG_MODE_DEST) && creator == ORPHANS_PID_GONE &&
           (last == ORPHANS_PID_GONE || last == ORPHANS_PID_NEVER);
}

void orphans_classify(const struct shmseg *s, const uint32_t *persistent_keys, size_t npersistent_keys,
                      struct orphans_verdict *ret)
{
    struct orphans_verdict v = { 0 };

    v.creator = orphans_pid_state(s->cpid, false, s);
    v.last = orphans_pid_state(s->lpid, true, s);
    v.candidate = is_orphan(s, v.creator, v.last);
    /* Key 0 is IPC_PRIVATE (and every segment marked for destroy): the
     * profile cannot list it. */
    for (size_t i = 0; i < npersistent_keys && s->key != 0; i++)
        v.persistent = v.persistent || persistent_keys[i] == s->key;
    *ret = v;
}

const char *orphans_outcome_name(enum orphans_outcome outcome)
{
    static const char *const names[] = { "removed", "would-remove", "changed", "already-gone", "failed" };

    return names[outcome];
}

/* The re-check: the scan saw *s; is the segment behind s->id still it? */
static bool still_same(const struct shmseg *s, const struct shmid_ds *ds, char *why, size_t why_len)
{
    if ((uint32_t)ds->shm_perm.__key != s->key) {
        (void)snprintf(why, why_len, "its key is now 0x%08x, not 0x%08x: another segment took id %" PRId32,
                       (unsigned)ds->shm_perm.__key, (unsigned)s->key, s->id);
        return false;
    }
    if ((int64_t)ds->shm_ctime != s->ctime || (uint64_t)ds->shm_segsz != s->size ||
        (int64_t)ds->shm_cpid != s->cpid) {
        (void)snprintf(why, why_len, "id %" PRId32 " now holds another segment (size, creator or change time differ)",
                       s->id);
        return false;
    }
    if ((int64_t)ds->shm_lpid != s->lpid || ds->shm_nattch != 0) {
        (void)snprintf(why, why_len, "attached since the scan (%lu attached now, last pid %ld)",
                       (unsigned long)ds->shm_nattch, (long)ds->shm_lpid);
        return false;
    }
    if (ds->shm_perm.mode & SHM_DEST) {
        (void)snprintf(why, why_len, "already marked for destroy");
        return false;
    }
    return true;
}

/* What IPC_STAT or IPC_RMID failing with err means: the segment is gone
 * already, or the call was refused (hint says why, when known). */
static enum orphans_outcome call_failed(const char *call, int err, const char *hint, char *why, size_t why_len)
{
    if (err == EINVAL || err == EIDRM) {
        (void)snprintf(why, why_len, "already removed");
        return ORPHAN_ALREADY_GONE;
    }
    (void)snprintf(why, why_len, "%s: %s%s", call, strerror(err), hint);
    return ORPHAN_FAILED;
}

enum orphans_outcome orphans_remove(const struct shmseg *s, bool dry_run, char *why, size_t why_len)
{
    struct shmid_ds ds;
    struct shmseg now;

    if (shmctl(s->id, IPC_STAT, &ds) < 0)
        return call_failed("cannot read it again (IPC_STAT)", errno,
                           errno == EACCES ? " (another user's segment: root needs CAP_IPC_OWNER to read it)" : "",
                           why, why_len);
    if (!still_same(s, &ds, why, why_len))
        return ORPHAN_CHANGED;
    /* The pids once more: a creator that came back (it cannot, but a
     * process in another namespace may become visible) keeps it. */
    now = *s;
    now.atime = ds.shm_atime;
    now.dtime = ds.shm_dtime;
    if (!is_orphan(&now, orphans_pid_state(now.cpid, false, &now), orphans_pid_state(now.lpid, true, &now))) {
        (void)snprintf(why, why_len, "its creator or last user is alive again");
        return ORPHAN_CHANGED;
    }
    (void)snprintf(why, why_len, "still an orphan on re-check");
    if (dry_run)
        return ORPHAN_WOULD_REMOVE;
    if (shmctl(s->id, IPC_RMID, NULL) < 0)
        return call_failed("IPC_RMID failed", errno,
                           errno == EPERM ? " (another user's segment: root needs CAP_SYS_ADMIN to remove it)" : "",
                           why, why_len);
    return ORPHAN_REMOVED;
}

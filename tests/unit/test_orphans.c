/* Orphan verdicts and the re-check before IPC_RMID, on the real kernel,
 * each test in a private IPC namespace (isolate.h): its segments never
 * exist on the host. */
#include "host.h"
#include "orphans.h"
#include "helpers.h"
#include "isolate.h"

static void enter_private_ipc(void)
{
    isolate(CLONE_NEWIPC, "creates real SysV segments");
}

/* The row /proc/sysvipc/shm shows for id, as status scans it. */
static struct shmseg scan(int id)
{
    struct shmseg_table *t = NULL;
    struct shmseg found = { .id = -1 };

    cr_assert_eq(host_read_segments(&t), 0);
    for (size_t i = 0; i < t->count; i++)
        if (t->items[i].id == id)
            found = t->items[i];
    free(t);
    cr_assert_eq(found.id, id, "segment %d is not in /proc/sysvipc/shm", id);
    return found;
}

/* The verdict on segment id as status scans it now; its row in *ret. */
static struct orphans_verdict verdict_of(int id, struct shmseg *ret)
{
    struct orphans_verdict v;

    *ret = scan(id);
    orphans_classify(ret, NULL, 0, &v);
    return v;
}

Test(orphans, dead_creators_segments_are_candidates_removed_after_recheck)
{
    char why[300];
    struct shmseg s;
    struct orphans_verdict v;
    int id;

    enter_private_ipc();
    id = create_by_child(0x5150, 10000, 0600, -1, false, NULL);
    v = verdict_of(id, &s);
    cr_expect_eq(v.creator, ORPHANS_PID_GONE);
    cr_expect_eq(v.last, ORPHANS_PID_NEVER);
    cr_assert(v.candidate);

    cr_expect_eq(orphans_remove(&s, true, why, sizeof(why)), ORPHAN_WOULD_REMOVE, "%s", why);
    cr_assert(segment_exists(id), "--dry-run removed it");
    cr_expect_eq(orphans_remove(&s, false, why, sizeof(why)), ORPHAN_REMOVED, "%s", why);
    cr_expect_not(segment_exists(id));
    cr_expect_eq(orphans_remove(&s, false, why, sizeof(why)), ORPHAN_ALREADY_GONE, "%s", why);

    /* Attached and detached by its dead creator: the last pid is gone too. */
    v = verdict_of(create_by_child(0x5151, 4096, 0600, -1, true, NULL), &s);
    cr_expect_eq(v.last, ORPHANS_PID_GONE);
    cr_expect_neq(s.lpid, 0);
    cr_expect(v.candidate);
}

/* The race the re-check exists for: the orphan is removed by someone else
 * and its id handed to a new segment (same key, made by another dead
 * process) between the scan and the removal. */
Test(orphans, segment_replaced_under_the_same_id_is_not_removed)
{
    char why[300];
    struct shmseg before, after;
    int id, replacement;
    FILE *next_id;

    enter_private_ipc();
    id = create_by_child(0x5152, 8192, 0600, -1, false, NULL);
    cr_assert(verdict_of(id, &before).candidate);

    cr_assert_eq(shmctl(id, IPC_RMID, NULL), 0);
    next_id = fopen("/proc/sys/kernel/shm_next_id", "w");
    cr_assert_not_null(next_id, "cannot open shm_next_id: %s", strerror(errno));
    fprintf(next_id, "%d\n", id);
    cr_assert_eq(fclose(next_id), 0);
    replacement = create_by_child(0x5152, 8192, 0600, -1, false, NULL);
    cr_assert_eq(replacement, id, "the kernel did not reuse the id: the test proves nothing");
    cr_assert(verdict_of(id, &after).candidate, "the replacement is itself an orphan");
    cr_assert_neq(after.cpid, before.cpid);

    cr_expect_eq(orphans_remove(&before, false, why, sizeof(why)), ORPHAN_CHANGED, "%s", why);
    cr_expect(segment_exists(id), "the replacement was removed on the strength of the old scan");
}

Test(orphans, attached_since_the_scan_is_not_removed)
{
    char why[300];
    struct shmseg s;
    void *p;
    int id;

    enter_private_ipc();
    id = create_by_child(0x5153, 4096, 0600, -1, false, NULL);
    cr_assert(verdict_of(id, &s).candidate);
    p = shmat(id, NULL, 0);
    cr_assert_neq(p, (void *)-1);
    cr_expect_eq(orphans_remove(&s, false, why, sizeof(why)), ORPHAN_CHANGED, "%s", why);
    cr_expect(segment_exists(id));
    cr_assert_eq(shmdt(p), 0);
    /* Detached again, but the last pid is this live process now. */
    cr_expect_eq(orphans_remove(&s, false, why, sizeof(why)), ORPHAN_CHANGED, "%s", why);
    cr_expect(segment_exists(id));
}

Test(orphans, live_creator_and_attached_are_not_candidates)
{
    struct shmseg s;
    struct orphans_verdict v;
    void *p;
    int id;

    enter_private_ipc();
    id = shmget(0x5154, 4096, IPC_CREAT | IPC_EXCL | 0600);
    cr_assert_geq(id, 0);
    v = verdict_of(id, &s);
    cr_expect_eq(v.creator, ORPHANS_PID_ALIVE);
    cr_expect_not(v.candidate, "nattch 0 but the creator (this process) lives");

    id = create_by_child(0x5155, 4096, 0600, -1, false, NULL);
    p = shmat(id, NULL, 0);
    cr_assert_neq(p, (void *)-1);
    v = verdict_of(id, &s);
    cr_expect_eq(v.creator, ORPHANS_PID_GONE);
    cr_expect_eq(v.last, ORPHANS_PID_ALIVE);
    cr_expect_not(v.candidate, "attached");
    cr_assert_eq(shmdt(p), 0);
    cr_expect_not(verdict_of(id, &s).candidate, "the last user (this process) lives");
}

Test(orphans, marked_for_destroy_is_not_a_candidate)
{
    struct shmseg s;
    void *p;
    int id;

    enter_private_ipc();
    id = create_by_child(0x5156, 4096, 0600, -1, false, NULL);
    p = shmat(id, NULL, 0);
    cr_assert_neq(p, (void *)-1);
    cr_assert_eq(shmctl(id, IPC_RMID, NULL), 0);
    cr_expect_not(verdict_of(id, &s).candidate);
    cr_expect(s.mode & SHMSEG_MODE_DEST);
    cr_expect_eq(s.key, 0, "the kernel turns the key of a destroyed segment into IPC_PRIVATE");
    cr_assert_eq(shmdt(p), 0);
}

Test(orphans, persistent_keys_are_flagged_but_private_never)
{
    static const uint32_t keys[] = { 0x5157, 0 };
    struct orphans_verdict v;
    struct shmseg s;

    enter_private_ipc();
    s = scan(create_by_child(0x5157, 4096, 0600, -1, false, NULL));
    orphans_classify(&s, keys, 2, &v);
    cr_expect(v.candidate);
    cr_expect(v.persistent);
    s = scan(create_by_child(IPC_PRIVATE, 4096, 0600, -1, false, NULL));
    orphans_classify(&s, keys, 2, &v);
    cr_expect(v.candidate);
    cr_expect_not(v.persistent, "key 0 (IPC_PRIVATE) must never match");
}

Test(orphans, pid_states)
{
    struct shmseg never = { 0 }, attached = { .atime = 1 };

    cr_expect_eq(orphans_pid_state(getpid(), false, &never), ORPHANS_PID_ALIVE);
    cr_expect_eq(orphans_pid_state(1, false, &never), ORPHANS_PID_ALIVE);
    cr_expect_eq(orphans_pid_state(0, false, &never), ORPHANS_PID_NOT_VISIBLE);
    cr_expect_eq(orphans_pid_state(0, true, &never), ORPHANS_PID_NEVER);
    cr_expect_eq(orphans_pid_state(0, true, &attached), ORPHANS_PID_NOT_VISIBLE);
    cr_expect_eq(orphans_pid_state(-5, false, &never), ORPHANS_PID_NOT_VISIBLE);
}

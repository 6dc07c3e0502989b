#pragma once
/* Shared by the unit tests: a profile from an inline YAML string, segments
 * a dead process made, scratch directories and the files put in them. The
 * headers below come with it: a test includes only what it adds. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "profile.h"
#include "testing.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static inline struct profile *parse_profile_or_die(const char *yaml)
{
    struct profile_diags diags;
    struct profile *p = NULL;
    int r;

    profile_diags_init(&diags, "test.yaml");
    r = profile_parse(yaml, strlen(yaml), "test.yaml", &diags, &p);
    if (r != 0)
        cr_assert_fail("profile did not parse (%d): %s", r,
                 diags.count ? diags.items[0].message : "(no message)");
    profile_diags_free(&diags);
    return p;
}

/* A segment made by a child: key, bytes and mode as given, owned by uid
 * (-1: stays root), attached and detached first when attach (its pid
 * becomes lpid). The child exits at once, as a creator that is gone leaves
 * it; with ret_alive it lives on instead, never attached, until killed. */
static inline int create_by_child(key_t key, uint64_t bytes, int mode, int uid, bool attach, pid_t *ret_alive)
{
    int fds[2], id = -1, status = 0;
    pid_t pid;

    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        void *p;
        if (uid < 0 || setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) == 0)
            id = shmget(key, (size_t)bytes, IPC_CREAT | IPC_EXCL | SHM_NORESERVE | mode);
        if (id >= 0 && attach && ((p = shmat(id, NULL, 0)) == (void *)-1 || shmdt(p) < 0))
            id = -1;
        if (write(fds[1], &id, sizeof(id)) != sizeof(id))
            _exit(2);
        /* Alive, it still goes with the test, even one that fails. */
        if (ret_alive && id >= 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() != 1)
            for (;;)
                pause();
        _exit(id >= 0 ? 0 : 1);
    }
    close(fds[1]);
    cr_assert_eq(read(fds[0], &id, sizeof(id)), (ssize_t)sizeof(id));
    close(fds[0]);
    if (ret_alive)
        *ret_alive = pid;
    else
        cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(id >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "the creating child failed");
    return id;
}

static inline bool segment_exists(int id)
{
    struct shmid_ds ds;

    return shmctl(id, IPC_STAT, &ds) == 0;
}

/* The test's scratch directory, made by scratch_make() (an .init) and
 * removed with all it holds by scratch_remove(); one per test process. */
static inline char *scratch(void)
{
    static char dir[] = "/tmp/shmprov-unit.XXXXXX";

    return dir;
}

static inline void scratch_make(void)
{
    cr_assert_not_null(mkdtemp(scratch()), "mkdtemp: %s", strerror(errno));
}

static inline void scratch_remove(void)
{
    char cmd[64];

    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch());
    cr_assert_eq(system(cmd), 0);
}

/* Writes text to dir/name, making the directories in between. */
static inline void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
    cr_assert_eq(fsutil_mkdir_parents(path), 0, "mkdir for %s", path);
    f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* shm_helper: a test-only tool that puts System V shared memory segments of
 * the caller's IPC namespace into known states, for the integration tests
 * of `shmprov status` (tests/integration/status.sh). Never installed; run it
 * only inside a private IPC namespace.
 *
 *   shm_helper create KEY BYTES [--mode OCTAL] [--id N] [--noreserve] [--attach]
 *                    [--touch] [--detach] [--lock] [--rmid] [--hold]
 *       KEY is hex (0x1234) or "private". shmget(IPC_CREAT|IPC_EXCL|mode,
 *       default 0600); --noreserve adds SHM_NORESERVE, as shmprov's probe
 *       does (a segment of many GiB then costs nothing); --id N first writes N to /proc/sys/kernel/shm_next_id
 *       (per IPC namespace) so the segment gets id N; --attach shmat()s it,
 *       --touch then writes every page (so it is resident), --detach
 *       shmdt()s it, --lock applies SHM_LOCK, --rmid marks it for destroy
 *       (IPC_RMID; while attached it stays until the last detach). Prints
 *       the shmid on one line. With --hold it then waits until SIGTERM or
 *       SIGINT (a live creator / attacher); without it exits (a creator
 *       that is gone).
 *   shm_helper attach ID [--detach] [--hold]
 *       shmat()s an existing segment (the caller becomes its last pid);
 *       --detach detaches again (nattch back to 0, last pid this process).
 *       Prints "ok"; --hold as above.
 *   shm_helper info
 *       The kernel's counters, shmctl(0, SHM_INFO):
 *       "used_ids shm_tot shm_rss shm_swp" on one line.
 *   shm_helper probe BYTES
 *       Whether a new segment of BYTES can be created now: shmget(
 *       IPC_PRIVATE, SHM_NORESERVE) then IPC_RMID at once. Prints "ok" or
 *       the errno name (ENOSPC, EINVAL, ENOMEM, ...); exit 0 either way.
 *
 * Exit status: 0 done, 1 a system call failed (said on stderr), 2 usage. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int usage(void)
{
    fputs("usage: shm_helper create KEY|private BYTES [--mode OCTAL] [--id N] [--noreserve] [--attach]\n"
          "                         [--touch] [--detach] [--lock] [--rmid] [--hold]\n"
          "       shm_helper attach ID [--detach] [--hold]\n"
          "       shm_helper info\n"
          "       shm_helper probe BYTES\n",
          stderr);
    return 2;
}

static int fail(const char *what)
{
    fprintf(stderr, "shm_helper: %s: %s\n", what, strerror(errno));
    return 1;
}

/* A whole-string unsigned number in base (0: C rules, 0x... hex). */
static bool parse_number(const char *s, int base, unsigned long long max, unsigned long long *ret)
{
    char *end;
    unsigned long long v;

    if (!s[0] || s[0] == '-' || s[0] == '+')
        return false;
    errno = 0;
    v = strtoull(s, &end, base);
    if (errno || *end || v > max)
        return false;
    *ret = v;
    return true;
}

/* Waits for SIGTERM/SIGINT. The handlers are installed before anything is
 * printed, so a caller that kills as soon as it has read the line is safe. */
static void hold(void)
{
    sigset_t block, old;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    while (!stop)
        sigsuspend(&old);
    sigprocmask(SIG_SETMASK, &old, NULL);
}

static int cmd_create(int argc, char **argv)
{
    unsigned long long key = IPC_PRIVATE, bytes, mode = 0600, next_id = 0;
    bool attach = false, touch = false, detach = false, lock = false, rmid = false, keep = false, set_id = false;
    int extra = 0;
    void *addr = NULL;
    int id;

    if (argc < 2)
        return usage();
    if (strcmp(argv[0], "private") != 0 &&
        (strncmp(argv[0], "0x", 2) != 0 || !parse_number(argv[0] + 2, 16, 0xffffffffULL, &key) || key == 0))
        return usage();
    if (!parse_number(argv[1], 10, (unsigned long long)SIZE_MAX, &bytes))
        return usage();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            if (!parse_number(argv[++i], 8, 0777, &mode))
                return usage();
        } else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            if (!parse_number(argv[++i], 10, 0x7fffffffULL, &next_id))
                return usage();
            set_id = true;
        } else if (strcmp(argv[i], "--noreserve") == 0) {
            extra = SHM_NORESERVE;
        } else if (strcmp(argv[i], "--attach") == 0) {
            attach = true;
        } else if (strcmp(argv[i], "--touch") == 0) {
            touch = attach = true;
        } else if (strcmp(argv[i], "--detach") == 0) {
            detach = true;
        } else if (strcmp(argv[i], "--lock") == 0) {
            lock = true;
        } else if (strcmp(argv[i], "--rmid") == 0) {
            rmid = true;
        } else if (strcmp(argv[i], "--hold") == 0) {
            keep = true;
        } else {
            return usage();
        }
    }
    if (detach && !attach)
        return usage();
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    if (set_id) {
        FILE *f = fopen("/proc/sys/kernel/shm_next_id", "w");
        if (!f)
            return fail("/proc/sys/kernel/shm_next_id");
        fprintf(f, "%llu\n", next_id);
        if (fclose(f) != 0)
            return fail("/proc/sys/kernel/shm_next_id");
    }
    id = shmget((key_t)(unsigned)key, (size_t)bytes, IPC_CREAT | IPC_EXCL | extra | (int)mode);
    if (id < 0)
        return fail("shmget");
    if (attach) {
        addr = shmat(id, NULL, 0);
        if (addr == (void *)-1)
            return fail("shmat");
        if (touch)
            memset(addr, 0x5a, (size_t)bytes);
    }
    if (lock && shmctl(id, SHM_LOCK, NULL) < 0)
        return fail("SHM_LOCK");
    if (detach && shmdt(addr) < 0)
        return fail("shmdt");
    if (rmid && shmctl(id, IPC_RMID, NULL) < 0)
        return fail("IPC_RMID");
    printf("%d\n", id);
    fflush(stdout);
    if (keep)
        hold();
    return 0;
}

static int cmd_attach(int argc, char **argv)
{
    unsigned long long id;
    bool detach = false, keep = false;
    void *addr;

    if (argc < 1 || !parse_number(argv[0], 10, 0x7fffffffULL, &id))
        return usage();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--detach") == 0)
            detach = true;
        else if (strcmp(argv[i], "--hold") == 0)
            keep = true;
        else
            return usage();
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    addr = shmat((int)id, NULL, SHM_RDONLY);
    if (addr == (void *)-1)
        return fail("shmat");
    if (detach && shmdt(addr) < 0)
        return fail("shmdt");
    printf("ok\n");
    fflush(stdout);
    if (keep)
        hold();
    return 0;
}

static int cmd_info(void)
{
    struct shm_info info;

    /* SHM_INFO fills a struct shm_info through the shmid_ds pointer. */
    if (shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info) < 0)
        return fail("shmctl SHM_INFO");
    printf("%d %lu %lu %lu\n", info.used_ids, (unsigned long)info.shm_tot, (unsigned long)info.shm_rss,
           (unsigned long)info.shm_swp);
    return 0;
}

static int cmd_probe(int argc, char **argv)
{
    unsigned long long bytes;
    int id;

    if (argc != 1 || !parse_number(argv[0], 10, (unsigned long long)SIZE_MAX, &bytes))
        return usage();
    id = shmget(IPC_PRIVATE, (size_t)bytes, IPC_CREAT | SHM_NORESERVE | 0600);
    if (id < 0) {
        const char *name = errno == ENOSPC ? "ENOSPC" : errno == EINVAL ? "EINVAL" : errno == ENOMEM ? "ENOMEM" : NULL;
        if (name)
            printf("%s\n", name);
        else
            printf("errno %d\n", errno);
        return 0;
    }
    if (shmctl(id, IPC_RMID, NULL) < 0)
        return fail("IPC_RMID");
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "create") == 0)
        return cmd_create(argc - 2, argv + 2);
    if (strcmp(argv[1], "attach") == 0)
        return cmd_attach(argc - 2, argv + 2);
    if (strcmp(argv[1], "info") == 0 && argc == 2)
        return cmd_info();
    if (strcmp(argv[1], "probe") == 0)
        return cmd_probe(argc - 2, argv + 2);
    return usage();
}

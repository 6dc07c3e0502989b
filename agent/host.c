#include "host.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "kernel.h"
#include "shmseg.h"
#include "sizes.h"
#include "testing.h"

#define PROC_FILE_MAX ((size_t)4 * 1024 * 1024)
/* 32768 segments (shmmni's maximum) take 5.6 MB in /proc/sysvipc/shm. */
#define SYSVIPC_SHM_MAX ((size_t)8 * 1024 * 1024)

/* Any "NAME:  N kB" line of /proc/meminfo -> bytes. Returns 0 or -EINVAL. */
static int meminfo_field(const char *text, const char *name, uint64_t *ret_bytes)
{
    size_t name_len = strlen(name);
    const char *line = text;

    while (line && *line) {
        if (strncmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *p = line + name_len + 1;
            char digits[24];
            size_t n;
            uint64_t kib;
            const char *why;

            p += strspn(p, " \t");
            n = strspn(p, "0123456789");
            if (n == 0 || n >= sizeof(digits) || strncmp(p + n, " kB", 3) != 0)
                return -EINVAL;
            memcpy(digits, p, n);
            digits[n] = '\0';
            if (sizes_parse_uint(digits, &kib, &why) < 0 || kib > (UINT64_MAX >> 10))
                return -EINVAL;
            *ret_bytes = kib << 10;
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -EINVAL;
}

int host_parse_meminfo(const char *text, uint64_t *ret_bytes)
{
    uint64_t bytes;

    if (meminfo_field(text, "MemTotal", &bytes) < 0 || bytes == 0)
        return -EINVAL;
    *ret_bytes = bytes;
    return 0;
}

int host_parse_sysvipc_shm(const char *text, uint64_t page_size, struct sizing_usage *ret)
{
    struct shmseg_table *t = NULL;
    int r;

    if (page_size == 0)
        return -EINVAL;
    r = shmseg_parse(text, strlen(text), &t);
    if (r < 0)
        return r;
    r = shmseg_usage(t, page_size, ret);
    free(t);
    return r;
}

/* Tests point the parsers at crafted tables (truncated, absurd) without
 * faking /proc for the whole process: SHMPROV_TEST_PROC_DIR replaces /proc
 * for meminfo and sysvipc/shm only. secure_getenv: never in a setuid or
 * file-capability context. */
static int proc_path(const char *name, char *buf, size_t size)
{
    const char *dir = secure_getenv("SHMPROV_TEST_PROC_DIR");

    /* Cut short, the path would name another file. */
    if ((size_t)snprintf(buf, size, "%s/%s", dir && dir[0] ? dir : "/proc", name) >= size)
        return -ENAMETOOLONG;
    return 0;
}

int host_read_segments(struct shmseg_table **ret)
{
    char path[PATH_MAX];
    char *buf = NULL;
    size_t len;
    int r;

    r = proc_path("sysvipc/shm", path, sizeof(path));
    if (r < 0)
        return r;
    r = fsutil_read_file(path, SYSVIPC_SHM_MAX, false, &buf, &len, NULL);
    if (r < 0)
        return r;
    r = shmseg_parse(buf, len, ret);
    free(buf);
    return r;
}

const char *host_segments_reason(int err)
{
    return err == EINVAL ? "not the table the kernel writes (malformed or cut short)" : strerror(err);
}

const char *host_runtime_write_reason(int err)
{
    switch (err) {
    case 0:
        return "writable";
    case EROFS:
        return "/proc/sys is read-only here (a container?): runtime limits are not applicable here";
    case EACCES:
        return "Permission denied: only root can change kernel limits";
    case EPERM:
        return "Operation not permitted: only root can change kernel limits";
    default:
        return strerror(err);
    }
}

/* MemTotal, and for vm.overcommit_memory = 2 what a new segment may still
 * commit; why MemTotal is unknown in f->memtotal_error. */
static void read_meminfo(struct host_facts *f)
{
    char path[PATH_MAX];
    CLEANUP_FREE char *buf = NULL;
    size_t len;
    uint64_t value;
    int r = proc_path("meminfo", path, sizeof(path));

    if (r == 0)
        r = fsutil_read_file(path, PROC_FILE_MAX, false, &buf, &len, NULL);
    if (r < 0) {
        (void)snprintf(f->memtotal_error, sizeof(f->memtotal_error), "%s: %s", path, fsutil_strerror(r));
        return;
    }
    if (host_parse_meminfo(buf, &value) == 0)
        f->memtotal_bytes = value;
    else
        (void)snprintf(f->memtotal_error, sizeof(f->memtotal_error),
                       "%s: no line 'MemTotal: N kB' with N from 1 to 2^54", path);
    f->commit_known = meminfo_field(buf, "CommitLimit", &f->commit_limit_bytes) == 0 &&
                      meminfo_field(buf, "Committed_AS", &f->committed_bytes) == 0;
}

int host_read(struct host_facts *f)
{
    struct utsname uts;
    long page = sysconf(_SC_PAGESIZE);
    int r;
    uint64_t value;

    if (page <= 0)
        return -EINVAL;
    memset(f, 0, sizeof(*f));
    f->page_size = (uint64_t)page;
    f->overcommit_memory = -1;
    read_meminfo(f);

    for (int id = 0; id < SIZING_KEY_COUNT; id++) {
        f->current.error[id] = kernel_read_limit(id, &f->current.value[id]);
        f->current.known[id] = f->current.error[id] == 0;
    }

    r = host_read_segments(&f->segments);
    f->segments_errno = r < 0 ? -r : 0;
    f->usage_known = r == 0 && shmseg_usage(f->segments, f->page_size, &f->usage) == 0;

    if (kernel_read_uint("/proc/sys/vm/overcommit_memory", &value) == 0 && value <= 2)
        f->overcommit_memory = (int)value;

    /* access() reports EROFS for a read-only mount even to root. */
    f->runtime_write_errno = TEMP_FAILURE_RETRY(access(kernel_limit_path(SIZING_KEY_SHMMAX), W_OK)) == 0 ? 0 : errno;

    if (gethostname(f->hostname, sizeof(f->hostname) - 1) < 0)
        (void)snprintf(f->hostname, sizeof(f->hostname), "unknown");
    if (uname(&uts) == 0)
        (void)snprintf(f->kernel_release, sizeof(f->kernel_release), "%s", uts.release);
    return 0;
}

void host_facts_free(struct host_facts *h)
{
    free(h->segments);
    h->segments = NULL;
}

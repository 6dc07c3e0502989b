#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fsutil.h"
#include "kernel.h"
#include "sizes.h"

#define PROC_FILE_MAX (4 * 1024 * 1024)

int host_parse_meminfo(const char *text, uint64_t *ret_bytes)
{
    const char *line = text;

    while (line && *line) {
        if (strncmp(line, "MemTotal:", 9) == 0) {
            const char *p = line + 9;
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
            if (sizes_parse_uint(digits, &kib, &why) < 0 || kib == 0 || kib > (UINT64_MAX >> 10))
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

/* The table's columns are fixed since Linux 2.6:
 *   key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
 * size is the fourth. */
int host_parse_sysvipc_shm(const char *text, uint64_t page_size, struct sizing_usage *ret)
{
    struct sizing_usage u = { 0 };
    const char *line = strchr(text, '\n');

    if (page_size == 0 || strncmp(text, "       key", 10) != 0 || !line)
        return -EINVAL;
    line++;
    while (*line) {
        unsigned long long size;
        long long key;
        int id;
        unsigned perms;
        const char *eol = strchr(line, '\n');

        if (!eol)
            return -EINVAL; /* truncated */
        if (sscanf(line, "%lld %d %o %llu", &key, &id, &perms, &size) != 4)
            return -EINVAL;
        if (u.bytes > UINT64_MAX - size)
            return -EINVAL;
        u.segments++;
        u.bytes += size;
        u.pages += size / page_size + (size % page_size != 0);
        if (size > u.largest_segment)
            u.largest_segment = size;
        line = eol + 1;
    }
    *ret = u;
    return 0;
}

const char *host_runtime_write_reason(int err)
{
    switch (err) {
    case 0:
        return "writable";
    case EROFS:
        return "/proc/sys is read-only here (a container?): runtime limits are not applicable here";
    case EACCES:
    case EPERM:
        return "only root can change kernel limits";
    default:
        return strerror(err);
    }
}

int host_read(struct host_facts *ret)
{
    struct host_facts f;
    struct utsname uts;
    char *buf = NULL;
    size_t len;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t value;

    if (page <= 0)
        return -EINVAL;
    memset(&f, 0, sizeof(f));
    f.page_size = (uint64_t)page;
    f.overcommit_memory = -1;

    if (fsutil_read_file("/proc/meminfo", PROC_FILE_MAX, false, &buf, &len, NULL) == 0) {
        if (host_parse_meminfo(buf, &value) == 0)
            f.memtotal_bytes = value;
        free(buf);
        buf = NULL;
    }

    for (int id = 0; id < KEY_COUNT; id++)
        f.current.known[id] = kernel_read_limit(id, &f.current.value[id]) == 0;

    if (fsutil_read_file("/proc/sysvipc/shm", PROC_FILE_MAX, false, &buf, &len, NULL) == 0) {
        f.usage_known = host_parse_sysvipc_shm(buf, f.page_size, &f.usage) == 0;
        free(buf);
        buf = NULL;
    }

    if (kernel_read_uint("/proc/sys/vm/overcommit_memory", &value) == 0 && value <= 2)
        f.overcommit_memory = (int)value;

    /* access() reports EROFS for a read-only mount even to root. */
    f.runtime_write_errno = access(kernel_limit_path(KEY_SHMMAX), W_OK) == 0 ? 0 : errno;

    if (gethostname(f.hostname, sizeof(f.hostname) - 1) < 0)
        snprintf(f.hostname, sizeof(f.hostname), "unknown");
    if (uname(&uts) == 0)
        snprintf(f.kernel_release, sizeof(f.kernel_release), "%s", uts.release);

    *ret = f;
    return 0;
}

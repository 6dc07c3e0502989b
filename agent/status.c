#include "status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "host.h"
#include "probe.h"

static uint64_t ns_inode(const char *path, bool *ret_known)
{
    struct stat st;

    *ret_known = stat(path, &st) == 0;
    return *ret_known ? (uint64_t)st.st_ino : 0;
}

/* The markers container managers leave, as systemd-detect-virt reads them;
 * only files anyone can read, so the answer does not depend on privileges. */
static void detect_container(struct status_namespace *ns)
{
    CLEANUP_FREE char *text = NULL;
    size_t len;

    if (fsutil_read_file("/run/systemd/container", 4096, false, &text, &len, NULL) == 0) {
        len = strcspn(text, "\n");
        if (len > 0 && len < sizeof(ns->container_buf)) {
            memcpy(ns->container_buf, text, len);
            ns->container_buf[len] = '\0';
            ns->container = ns->container_buf;
            return;
        }
    }
    if (access("/.dockerenv", F_OK) == 0)
        ns->container = "docker";
    else if (access("/run/.containerenv", F_OK) == 0)
        ns->container = "podman";
}

static void read_namespace(struct status_namespace *ns)
{
    bool known;

    memset(ns, 0, sizeof(*ns));
    ns->ipc_ino = ns_inode("/proc/self/ns/ipc", &ns->ipc_known);
    ns->ipc_initial = ns->ipc_known && ns->ipc_ino == STATUS_INITIAL_IPC_NS_INO;
    ns->pid_initial = ns_inode("/proc/self/ns/pid", &known) == STATUS_INITIAL_PID_NS_INO && known;
    ns->user_initial = ns_inode("/proc/self/ns/user", &known) == STATUS_INITIAL_USER_NS_INO && known;
    detect_container(ns);
}

void status_judge_segment(const struct shmseg *seg, const struct profile *p, uid_t euid,
                          struct orphans_verdict *ret)
{
    orphans_classify(seg, p->persistent_keys, p->npersistent_keys, ret);
    if (!ret->persistent && probe_is_leftover(seg, euid)) {
        ret->probe_leftover = true;
        ret->candidate = false;
    }
}

static int classify_segments(struct status *s)
{
    const struct shmseg_table *t = s->segments;
    uid_t euid = geteuid();

    s->verdicts = calloc(t->count ? t->count : 1, sizeof(*s->verdicts));
    if (!s->verdicts)
        return -ENOMEM;
    for (size_t i = 0; i < t->count; i++) {
        struct orphans_verdict *v = &s->verdicts[i];

        status_judge_segment(&t->items[i], s->plan->profile, euid, v);
        s->nleftovers += v->probe_leftover;
        s->norphans += v->candidate;
        s->npersistent_orphans += v->candidate && v->persistent;
    }
    /* The host's page size is never 0: this cannot fail. */
    (void)shmseg_usage(t, s->plan->host.page_size, &s->table);
    return 0;
}

int status_gather(const struct plan *plan, const struct shmseg_table *segments, int segments_errno,
                  struct status **ret)
{
    struct status *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return -ENOMEM;
    s->plan = plan;
    read_namespace(&s->ns);
    s->kernel_known = kernel_read_shm_usage(&s->kernel) == 0;

    s->segments = segments;
    s->segments_errno = segments_errno;
    if (segments && classify_segments(s) < 0)
        goto fail;
    s->segments_in_use = s->kernel_known ? s->kernel.segments : s->table.segments;
    s->pages_in_use = s->kernel_known ? s->kernel.pages : s->table.pages;
    if (s->kernel_known || segments)
        s->headroom = sizing_headroom_now(&plan->host.current, plan->host.page_size, s->pages_in_use,
                                          s->segments_in_use);

    /* A failed analysis only loses the "at boot" lines, never the rest. */
    r = conflicts_check_on_disk(plan, &s->boot);
    if (r == -ENOMEM)
        goto fail;
    s->boot_known = r == 0;
    *ret = s;
    return 0;
fail:
    status_free(s);
    return -ENOMEM;
}

void status_free(struct status *s)
{
    if (!s)
        return;
    free(s->verdicts);
    free(s);
}

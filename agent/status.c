#include "status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    char *text = NULL;
    size_t len;

    if (fsutil_read_file("/run/systemd/container", 4096, false, &text, &len, NULL) == 0) {
        len = strcspn(text, "\n");
        if (len > 0 && len < sizeof(ns->container_buf)) {
            memcpy(ns->container_buf, text, len);
            ns->container_buf[len] = '\0';
            ns->container = ns->container_buf;
        }
        free(text);
        if (ns->container)
            return;
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

static int classify_segments(struct status *s)
{
    const struct profile *p = s->plan->profile;
    const struct shmseg_table *t = s->segments;
    uid_t euid = geteuid();

    s->verdicts = calloc(t->count ? t->count : 1, sizeof(*s->verdicts));
    if (!s->verdicts)
        return -ENOMEM;
    for (size_t i = 0; i < t->count; i++) {
        const struct shmseg *seg = &t->items[i];

        orphans_classify(seg, p->persistent_keys, p->npersistent_keys, &s->verdicts[i]);
        /* shmprov's own leftover is shown as what it is, not as an orphan
         * of unknown origin; unless the profile says the key is another
         * program's (persistent). */
        if (!s->verdicts[i].persistent && probe_is_leftover(seg, euid)) {
            s->verdicts[i].probe_leftover = true;
            s->verdicts[i].candidate = false;
            s->nleftovers++;
        }
        if (s->verdicts[i].candidate) {
            s->norphans++;
            s->npersistent_orphans += s->verdicts[i].persistent;
        }
        s->bytes += seg->size;
        if (seg->size > s->largest)
            s->largest = seg->size;
    }
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
    s->segments_in_use = s->kernel_known ? s->kernel.segments : plan->host.usage.segments;
    s->pages_in_use = s->kernel_known ? s->kernel.pages : plan->host.usage.pages;
    if (s->kernel_known || plan->host.usage_known)
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

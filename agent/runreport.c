#include "runreport.h"

#include <errno.h>
#include <string.h>

#include "delivery.h"
#include "lock.h"
#include "log.h"

void runreport_send(const struct profile *p, json_object *data, bool defer)
{
    struct delivery_summary sum;
    struct lock *spool_lock = NULL;
    long holder = 0;
    int r;

    if (!defer)
        delivery_splay(p);
    /* Another shmprov delivering holds the spool at most its network
     * deadline; wait that long. Failing that, only spool the event (its
     * file is written atomically under a unique name): never lose it. */
    r = lock_acquire(LOCK_SPOOL_PATH, p->report.timeout_s * 1000u + LOCK_WAIT_MS, &spool_lock, &holder);
    if (r == -EWOULDBLOCK) {
        log_warn("cannot lock %s (held by pid %ld): keeping the report for a later run", LOCK_SPOOL_PATH, holder);
        defer = true;
    } else if (r < 0) {
        /* Not another shmprov but this one's rights (not root): the spool
         * will not take the event either, so send it directly. */
        log_warn("cannot lock %s: %s", LOCK_SPOOL_PATH, strerror(-r));
    }
    r = delivery_report(p, data, !defer, &sum);
    lock_release(spool_lock);

    /* LOST only when it is: neither spooled nor delivered. */
    if (r < 0)
        log_error("report LOST: %s", sum.error);
    else if (sum.own_direct)
        log_warn("report delivered directly (could not spool it: %s)", sum.spool_error);
    else if (defer)
        log_info("report kept in %s for a later run or 'shmprov flush' (%u waiting)",
                 p->report.spool_dir, sum.waiting);
    else if (sum.own_delivered && sum.waiting == 0)
        log_info("report delivered to %s", p->report.url);
    else if (sum.own_delivered)
        /* Not "older": this one stays too when its removal failed. */
        log_warn("report delivered; %u report(s) still waiting in %s", sum.waiting, p->report.spool_dir);
    else
        log_warn("report not delivered, kept in %s (%u waiting): %s", p->report.spool_dir, sum.waiting,
                 sum.error);
}

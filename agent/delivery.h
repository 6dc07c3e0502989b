#pragma once
/* Getting reports to the collector without ever losing one: the command
 * layer's glue between the spool (files) and http (network), which never
 * include each other. An event is spooled BEFORE it is sent, so a run
 * killed mid-send leaves it for the next run; nothing leaves the spool
 * before a 2xx but an event set aside, damaged or refused as malformed.
 *
 * All the requests of one delivery_report() or one delivery_flush() go
 * over one http session: one connection, one TLS handshake.
 *
 * Each count of the spool's counters (dropped, quarantined, rejected)
 * travels in one event's reports_* members and is subtracted once that
 * event is delivered: a crash may make a later event count it again, never
 * hide it. An event sent again after a crash between its 2xx and its
 * removal arrives twice under one id; the collector is to count an id once. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "profile.h"

/* How many bytes of undelivered events the spool keeps before it drops the
 * oldest (and counts them in the next report); the count is the profile's
 * report.spool_max_events. */
#define DELIVERY_SPOOL_MAX_BYTES ((uint64_t)16 * 1024 * 1024)
/* Events per batch when `flush` sends application/cloudevents-batch+json. */
#define DELIVERY_BATCH_MAX_EVENTS 100

struct delivery_summary {
    unsigned delivered;   /* events in a body that got a 2xx */
    unsigned waiting;     /* events left in the spool */
    bool waiting_unknown; /* the spool could not be listed: waiting is 0 but unknown */
    unsigned rejected;    /* events the collector refused: kept in the spool (401, 403, 404...), or
                           * moved to its rejected directory when refused as
                           * malformed (400, 413, 415, 422), never sent again */
    unsigned quarantined; /* damaged events moved out of the spool, never to be sent */
    bool own_delivered;   /* this run's event */
    bool own_direct;      /* ...sent without the spool, which could not take it */
    char spool_error[384]; /* why the spool could not take this run's event */
    char error[512];      /* the last problem, for people; never holds the token */
};

/* Herd control: after an outage, 10,000 hosts must not all report in the
 * same second. Waits a random 0..report.splay seconds; called before the
 * spool is locked, so waiting holds nothing up. */
void delivery_splay(const struct profile *p);

/* Reports one run: spools the event made from data (consumed; its
 * reports_* members are set from the counters, less what waiting events
 * carry already, 0 when that cannot be read now); unless send is false
 * (apply --defer-report, at boot: never wait on the network), then sends
 * every spooled event oldest first, this one last, within one deadline of
 * report.timeout seconds. When the spool cannot take the event and send is true, the
 * event is sent directly, once (own_direct, spool_error says why).
 * Returns 0 with *ret filled whatever the network did; a negative errno
 * only when the event is lost: neither spooled nor delivered (error says
 * why). */
int delivery_report(const struct profile *p, json_object *data, bool send, struct delivery_summary *ret);

/* `shmprov flush`: sends the spool now, oldest first, in batches
 * (application/cloudevents-batch+json), one by one where the collector
 * does not take batches; damaged events are quarantined. Returns 0 with
 * *ret filled, or a negative errno when the spool cannot be opened or
 * listed. */
int delivery_flush(const struct profile *p, struct delivery_summary *ret);

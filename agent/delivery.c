#include "delivery.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "hash.h"
#include "http.h"
#include "log.h"
#include "report.h"
#include "spool.h"
#include "version.h"

#define TOKEN_MAX_BYTES 4096

static void say(struct delivery_summary *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct delivery_summary *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
}

/* Reads a bearer token: a regular file (a symlink is followed, its target
 * checked), at most 4 KiB, readable by nobody but its owner (ssh's rule: no
 * group or other permission at all), one line of visible ASCII. The token
 * never appears in messages. Returns 0 with a malloc'd token, or a negative
 * errno with sum->error saying why, naming the path only. */
static int read_token(const char *path, char **ret_token, struct delivery_summary *sum)
{
    struct stat st;
    char *buf = NULL;
    size_t len, visible = 0;
    int r = fsutil_read_file(path, TOKEN_MAX_BYTES, false, &buf, &len, &st);

    if (r < 0) {
        say(sum, "cannot read token file '%s': %s", path, fsutil_strerror(r));
        return r;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    while (visible < len && buf[visible] > ' ' && buf[visible] <= '~')
        visible++;
    if (st.st_mode & 077) {
        say(sum, "token file '%s' is accessible by group or others (mode %04o); chmod 0600 it", path,
            (unsigned)(st.st_mode & 07777));
        r = -EPERM;
    } else if (geteuid() == 0 && st.st_uid != 0) {
        say(sum, "token file '%s' is owned by uid %u, not root", path, (unsigned)st.st_uid);
        r = -EPERM;
    } else if (visible < len) {
        say(sum, "token file '%s' must hold one line of visible ASCII", path);
        r = -EINVAL;
    } else if (len == 0) {
        say(sum, "token file '%s' is empty", path);
        r = -EINVAL;
    }
    if (r < 0) {
        explicit_bzero(buf, len);
        free(buf);
        return r;
    }
    *ret_token = buf;
    return 0;
}

/* Everything one run (or one flush) sends goes through one sender: one
 * token read, one deadline, and one http session, so all its requests
 * share one connection and one TLS handshake. */
struct sender {
    const struct profile *p;
    char *token;
    struct http_session *http;
    uint64_t deadline_ms;
    struct delivery_summary *sum;
    bool network_down; /* stop trying within this run */
};

static enum http_outcome post(struct sender *snd, const char *type, const char *body, size_t len,
                              const char *id, long *ret_status)
{
    struct http_request req = {
        .url = snd->p->report.url,
        .content_type = type,
        .body = body,
        .body_len = len,
        .bearer_token = snd->token,
        .idempotency_key = id,
        .ca_file = snd->p->report.ca_file,
        .client_cert = snd->p->report.client_cert,
        .client_key = snd->p->report.client_key,
        .user_agent = "shmprov/" SHMPROV_VERSION,
        .deadline_ms = snd->deadline_ms,
    };
    struct http_result res;

    if (http_session_post(snd->http, &req, &res) < 0) {
        say(snd->sum, "cannot send to %s: invalid request", snd->p->report.url);
        return HTTP_FAILED;
    }
    *ret_status = res.status;
    if (res.outcome != HTTP_DELIVERED)
        say(snd->sum, "%s: %s (%s after %u attempt%s)", snd->p->report.url, res.error,
            http_outcome_name(res.outcome), res.attempts, res.attempts == 1 ? "" : "s");
    return res.outcome;
}


#define CE_STRUCTURED "application/cloudevents+json"
#define CE_BATCH "application/cloudevents-batch+json"

/* A spooled event read and checked, ready to send. */
struct loaded {
    const struct spool_entry *e;
    char *text;
    size_t len;
    json_object *obj;
};

static void free_loaded(struct loaded *l)
{
    free(l->text);
    json_object_put(l->obj);
    l->text = NULL;
    l->obj = NULL;
}

/* What an event carries from the spool's counters (reports_dropped...),
 * subtracted from them once the event is delivered, whichever run or
 * flush delivers it. */
struct carried {
    uint64_t count[SPOOL_COUNTERS];
    bool unknown[SPOOL_COUNTERS];
};

static const char *const count_fields[SPOOL_COUNTERS] = { "reports_dropped", "reports_quarantined",
                                                           "reports_rejected" };
static const char *const unknown_fields[SPOOL_COUNTERS] = { "reports_dropped_unknown", "reports_quarantined_unknown",
                                                            "reports_rejected_unknown" };

/* Read back from the event itself, as the collector reads it: a member
 * missing, negative or not an integer carries nothing. */
static void carried_of(json_object *event, struct carried *c)
{
    json_object *data = NULL, *v;

    memset(c, 0, sizeof(*c));
    if (!json_object_object_get_ex(event, "data", &data) || !json_object_is_type(data, json_type_object))
        return;
    for (int i = 0; i < SPOOL_COUNTERS; i++) {
        if (json_object_object_get_ex(data, count_fields[i], &v) && json_object_is_type(v, json_type_int) &&
            json_object_get_int64(v) > 0)
            c->count[i] = json_object_get_uint64(v);
        c->unknown[i] = json_object_object_get_ex(data, unknown_fields[i], &v) &&
                        json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
    }
}

/* An event that carried c was delivered and is out of the spool: those
 * are reported. Floor 0 (spool_clear_count): a counter rewritten after
 * damage may hold less than an older event carried. */
static void clear_carried(struct spool *sp, const struct carried *c)
{
    for (int i = 0; sp && i < SPOOL_COUNTERS; i++) {
        int r;

        if (c->count[i] == 0 && !c->unknown[i])
            continue;
        r = spool_clear_count(sp, (enum spool_counter)i, c->count[i], c->unknown[i]);
        if (r < 0)
            log_warn("cannot update %s/%s after a report carried it: %s; the next report counts those again",
                     spool_path(sp), spool_counter_file((enum spool_counter)i), strerror(-r));
    }
}

/* The whole file must be one JSON object: one cut short, or with anything
 * after the object, is damaged. NULL with *why set, or with *why NULL when
 * json-c ran out of memory (json-c 0.16 reports that as no error at all),
 * which a later run may not. */
static json_object *parse_event(const char *text, size_t len, const char **why)
{
    struct json_tokener *tok;
    enum json_tokener_error err;
    json_object *obj;
    size_t end;

    *why = NULL;
    tok = json_tokener_new();
    if (!tok)
        return NULL;
    obj = json_tokener_parse_ex(tok, text, (int)len); /* len <= SPOOL_MAX_EVENT_BYTES */
    err = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj) {
        if (err != json_tokener_success)
            *why = "is not JSON (cut short or damaged)";
        return NULL;
    }
    while (end < len && (text[end] == ' ' || text[end] == '\t' || text[end] == '\r' || text[end] == '\n'))
        end++;
    if (end < len)
        *why = "is not JSON (something follows the event)";
    else if (!json_object_is_type(obj, json_type_object))
        *why = "is not a JSON object";
    if (*why) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

/* Failures reading a spooled event that say what the file is, and will
 * say it again: not a regular file, a symlink, too large. Such an event is
 * quarantined, never delivered. */
static bool never_delivered(int r)
{
    return r == -ELOOP || r == -EINVAL || r == -EISDIR || r == -EFBIG;
}

/* Moves an event that must never be sent again (a damaged one, or one the
 * collector refused as malformed) to the directory of counter c, and
 * says so: what names the event and why. True when it moved. */
static bool set_aside(struct spool *sp, const struct spool_entry *e, enum spool_counter c, const char *what)
{
    const char *dir = c == SPOOL_COUNTER_REJECTED ? SPOOL_REJECTED_DIR : SPOOL_QUARANTINE_DIR;
    int sync_error = 0;
    int r = spool_set_aside(sp, e, c, &sync_error);

    if (r < 0) {
        log_warn("%s, and cannot be moved to %s/%s: %s; left in place", what, spool_path(sp), dir, strerror(-r));
        return false;
    }
    log_warn("%s: moved to %s/%s/%s, never to be sent%s%s%s", what, spool_path(sp), dir, e->name,
             sync_error ? " (syncing the directories failed: " : "", sync_error ? strerror(-sync_error) : "",
             sync_error ? "; the move may not survive a crash)" : "");
    return true;
}

/* Moves an event that can never be sent out of the way, so no run tries
 * it again. */
static void quarantine(struct spool *sp, const struct spool_entry *e, const char *why,
                       struct delivery_summary *sum)
{
    char what[PATH_MAX + 256];

    (void)snprintf(what, sizeof(what), "spooled report %s/%s %s", spool_path(sp), e->name, why);
    if (set_aside(sp, e, SPOOL_COUNTER_QUARANTINED, what))
        sum->quarantined++;
}

/* Reads and parses one spooled event: 0 with *l ready, or a negative errno
 * with *l empty; *why says how the event is damaged, NULL when it is not. */
static int read_event(struct spool *sp, const struct spool_entry *e, struct loaded *l, const char **why)
{
    int r = e->error;

    memset(l, 0, sizeof(*l));
    l->e = e;
    *why = NULL;
    if (r == 0)
        r = spool_read(sp, e, &l->text, &l->len);
    if (r == 0) {
        l->obj = parse_event(l->text, l->len, why);
        r = l->obj ? 0 : *why ? -EBADMSG : -ENOMEM;
    }
    if (r < 0)
        free_loaded(l);
    return r;
}

/* Reads and checks one spooled event. 0: *l is ready. 1: nothing to send
 * now: gone meanwhile, unreadable for now (left in place, warned), or
 * damaged (quarantined). */
static int load_event(struct spool *sp, const struct spool_entry *e, struct delivery_summary *sum, struct loaded *l)
{
    const char *why = NULL;
    char unusable[128];
    int r = read_event(sp, e, l, &why);

    if (r == 0)
        return 0;
    if (r == -ENOENT)
        return 1;
    /* Unreadable media (-EIO) will not get better either. */
    if (!why && (never_delivered(r) || r == -EIO)) {
        (void)snprintf(unusable, sizeof(unusable), "cannot be used (%s)", fsutil_strerror(r));
        why = unusable;
    }
    if (why)
        quarantine(sp, e, why, sum);
    else { /* EINTR, ENOMEM, EMFILE, EACCES...: the next run may do better */
        say(sum, "spooled report %s/%s cannot be read now (%s); left in place for the next run", spool_path(sp),
            e->name, strerror(-r));
        log_warn("%s", sum->error);
    }
    return 1;
}

/* A 2xx for the event e, which carried c. Removed first, then subtracted:
 * a crash in between leaves the counts for the next report to carry again
 * (an over-count, never a loss); the other way round, the event sent again
 * would subtract them twice. Not removed: not subtracted either, the event
 * is sent again (same id) and subtracts them then. */
static void delivered(struct spool *sp, const struct spool_entry *e, const struct carried *c,
                      struct delivery_summary *sum)
{
    int r = spool_remove(sp, e);

    if (r < 0 && r != -ENOENT) {
        say(sum, "report %s was delivered, but removing %s/%s from the spool failed (%s); if it is still there, "
            "it is sent again (same id)", e->id, spool_path(sp), e->name, strerror(-r));
        log_warn("%s", sum->error);
        return;
    }
    clear_carried(sp, c);
}

/* A 2xx for a loaded event: counted, and what it carried read back from it. */
static void loaded_delivered(struct spool *sp, const struct loaded *l, struct delivery_summary *sum)
{
    struct carried c;

    sum->delivered++;
    carried_of(l->obj, &c);
    delivered(sp, l->e, &c, sum);
}

/* What a collector answers for an event it will never take as it is: the
 * same bytes would be refused again, forever. */
static bool malformed(long status)
{
    return status == 400 || status == 413 || status == 415 || status == 422;
}

/* An event the collector refused as malformed leaves the spool after this
 * one attempt, counted, so that it blocks nothing again; any other refusal
 * (401, 403, 404...) is the configuration's, and the event stays. */
static void rejected(struct spool *sp, const struct spool_entry *e, long status, struct delivery_summary *sum)
{
    char what[160];

    sum->rejected++;
    if (!malformed(status))
        return;
    (void)snprintf(what, sizeof(what), "report %s was refused as malformed (HTTP %ld)", e->id, status);
    (void)set_aside(sp, e, SPOOL_COUNTER_REJECTED, what);
}

/* Posts one loaded event; removes it only after a 2xx. */
static void send_loaded(struct sender *snd, struct spool *sp, const struct loaded *l)
{
    long status = 0;
    enum http_outcome o = post(snd, CE_STRUCTURED, l->text, l->len, l->e->id, &status);

    if (o == HTTP_DELIVERED)
        loaded_delivered(sp, l, snd->sum);
    else if (o == HTTP_REJECTED)
        rejected(sp, l->e, status, snd->sum);
    else
        snd->network_down = true;
}

/* A batch's Idempotency-Key, the same for the same events in the same
 * order: "batch-" and the hex SHA-256 of their ids, each followed by a
 * newline. */
static int batch_key(const struct loaded *l, size_t n, char ret[sizeof("batch-") + 64])
{
    /* An id and its newline fit in sizeof(id). */
    size_t size = n * sizeof(l->e->id) + 1, used = 0;
    char *ids = malloc(size);
    char hex[65];

    if (!ids)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(ids + used, size - used, "%s\n", l[i].e->id);
    hash_sha256_hex(ids, used, hex);
    free(ids);
    (void)snprintf(ret, sizeof("batch-") + 64, "batch-%s", hex);
    return 0;
}

/* One batch of the events in l. Returns 1 when the collector refused the
 * batch as such (send them one by one), else 0. */
static int send_batch(struct sender *snd, struct spool *sp, const struct loaded *l, size_t n)
{
    char key[sizeof("batch-") + 64], before[sizeof(snd->sum->error)];
    json_object *batch = json_object_new_array();
    const char *body;
    long status = 0;
    enum http_outcome o;

    /* Built by the JSON library from the parsed events. */
    for (size_t i = 0; batch && i < n; i++)
        json_object_array_add(batch, json_object_get(l[i].obj));
    body = batch ? json_object_to_json_string_ext(batch, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                 : NULL;
    if (!body) {
        say(snd->sum, "cannot build a batch of reports: %s", strerror(ENOMEM));
        json_object_put(batch);
        snd->network_down = true; /* nothing more this run */
        return 0;
    }
    memcpy(before, snd->sum->error, sizeof(before));
    o = post(snd, CE_BATCH, body, strlen(body), batch_key(l, n, key) == 0 ? key : NULL, &status);
    json_object_put(batch);
    if (o == HTTP_DELIVERED) {
        /* Exactly what was in the body: nothing else is counted or removed. */
        for (size_t i = 0; i < n; i++)
            loaded_delivered(sp, &l[i], snd->sum);
        return 0;
    }
    /* 400/404/405/413/415: this collector does not take batches; 422: one
     * of them is malformed. Not a failure to report: the events go one by
     * one instead, which also finds the malformed one. */
    if (o == HTTP_REJECTED && (malformed(status) || status == 404 || status == 405)) {
        /* Only the refusal is forgotten, not a problem found before it
         * (an event that cannot be read now). */
        memcpy(snd->sum->error, before, sizeof(before));
        return 1;
    }
    if (o == HTTP_REJECTED)
        snd->sum->rejected += (unsigned)n;
    else
        snd->network_down = true;
    return 0;
}

/* Up to one batch of entries: loaded (the damaged quarantined), then sent
 * as a batch, or one by one once the collector has refused batches. */
static void flush_chunk(struct sender *snd, struct spool *sp, const struct spool_entry *e, size_t n, bool *single)
{
    struct loaded l[DELIVERY_BATCH_MAX_EVENTS];
    size_t used = 0;

    for (size_t i = 0; i < n && i < DELIVERY_BATCH_MAX_EVENTS; i++)
        if (load_event(sp, &e[i], snd->sum, &l[used]) == 0)
            used++;
    if (used > 0 && !*single && send_batch(snd, sp, l, used) == 1) {
        log_info("the collector does not take batches; sending one event at a time");
        *single = true;
    }
    for (size_t i = 0; *single && i < used && !snd->network_down; i++)
        send_loaded(snd, sp, &l[i]);
    for (size_t i = 0; i < used; i++)
        free_loaded(&l[i]);
}

static void count_waiting(struct spool *sp, struct delivery_summary *sum)
{
    struct spool_entry *e = NULL;
    size_t n = 0;
    int r = spool_list(sp, &e, &n);

    if (r < 0) {
        sum->waiting_unknown = true;
        if (!sum->error[0])
            say(sum, "cannot list the report spool '%s' to count what is waiting: %s", spool_path(sp), strerror(-r));
        return;
    }
    sum->waiting = (unsigned)n;
    free(e);
}

/* A counter file found damaged is no failure: it is rewritten, and said
 * once. */
static void warn_damage(struct spool *sp)
{
    for (int c = 0; c < SPOOL_COUNTERS; c++) {
        int rewrite = 0, r = spool_counter_damaged(sp, (enum spool_counter)c, &rewrite);
        char done[160];

        if (r == 0)
            continue;
        if (rewrite)
            (void)snprintf(done, sizeof(done), "it cannot be rewritten (%s)", strerror(-rewrite));
        else
            (void)snprintf(done, sizeof(done), "rewritten to count from 0");
        log_warn("report spool counter %s/%s %s (%s): %s; the next delivered report says its count is unknown",
                 spool_path(sp), spool_counter_file((enum spool_counter)c),
                 r == -EBADMSG ? "is damaged" : "cannot be read", r == -EBADMSG ? "not a number" : fsutil_strerror(r),
                 done);
    }
}

static int open_spool(const struct profile *p, struct spool **ret, char *why, size_t why_len)
{
    int r = spool_open(p->report.spool_dir, p->report.spool_max_events, DELIVERY_SPOOL_MAX_BYTES, ret);
    if (r < 0)
        (void)snprintf(why, why_len, "cannot open the report spool '%s': %s", p->report.spool_dir, strerror(-r));
    return r;
}

/* stop_sender() is safe after a start_sender() that failed part way. */
static int start_sender(const struct profile *p, struct sender *snd, struct delivery_summary *sum)
{
    int r;

    memset(snd, 0, sizeof(*snd));
    snd->p = p;
    snd->sum = sum;
    if (p->report.token_file) {
        r = read_token(p->report.token_file, &snd->token, sum);
        if (r < 0)
            return r;
    }
    r = http_session_open(&snd->http);
    if (r < 0) {
        say(sum, "cannot send to %s: %s", p->report.url, strerror(-r));
        return r;
    }
    snd->deadline_ms = clock_monotonic_ms() + (uint64_t)p->report.timeout_s * 1000;
    return 0;
}

static void stop_sender(struct sender *snd)
{
    http_session_close(snd->http);
    snd->http = NULL;
    if (snd->token)
        explicit_bzero(snd->token, strlen(snd->token));
    free(snd->token);
    snd->token = NULL;
}

void delivery_splay(const struct profile *p)
{
    uint32_t r;
    struct timespec ts;
    uint64_t ms;

    if (p->report.splay_s == 0)
        return;
    if (TEMP_FAILURE_RETRY(getrandom(&r, sizeof(r), 0)) != (ssize_t)sizeof(r))
        r = (uint32_t)getpid();
    ms = r % ((uint64_t)p->report.splay_s * 1000 + 1);
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    log_debug("splay: waiting %llu ms before reporting", (unsigned long long)ms);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Adds what the spooled event e carries to *c. False when it cannot be
 * read now, so what it carries is unknown. */
static bool add_waiting(struct spool *sp, const struct spool_entry *e, struct carried *c)
{
    const char *why;
    struct carried one;
    struct loaded l;
    int r = read_event(sp, e, &l, &why);

    /* Gone, or damaged: never delivered. Out of memory is no why. */
    if (r == -ENOENT || why)
        return true;
    if (r < 0)
        return never_delivered(r);
    carried_of(l.obj, &one);
    free_loaded(&l);
    for (int i = 0; i < SPOOL_COUNTERS; i++)
        c->count[i] = c->count[i] > UINT64_MAX - one.count[i] ? UINT64_MAX : c->count[i] + one.count[i];
    return true;
}

/* What the events waiting in the spool carry, read only when a counter is
 * not 0. False when one of them could not be read now (or the spool not
 * listed): what they carry is unknown. */
static bool waiting_carries(struct spool *sp, struct carried *ret)
{
    struct spool_entry *e = NULL;
    size_t n = 0;
    bool any = false, known = true;

    memset(ret, 0, sizeof(*ret));
    for (int i = 0; i < SPOOL_COUNTERS; i++)
        any = any || spool_count(sp, (enum spool_counter)i) > 0;
    if (!any)
        return true;
    if (spool_list(sp, &e, &n) < 0)
        return false;
    for (size_t i = 0; i < n && known; i++)
        known = add_waiting(sp, &e[i], ret);
    free(e);
    return known;
}

/* Sets this run's report's counters. A counter counts what no delivered
 * event has carried yet, but events still waiting in the spool may carry
 * part of it already; this one carries only the rest, so that no count is
 * in two events and the collector's sum over them never over-counts. When
 * what the waiting events carry is unknown, this one carries nothing: the
 * counts stay counted for a later event, never lost. */
static void add_counts(struct spool *sp, json_object *data, struct carried *c)
{
    struct carried waiting;
    bool known = sp && waiting_carries(sp, &waiting);

    for (int i = 0; i < SPOOL_COUNTERS; i++) {
        uint64_t n = sp ? spool_count(sp, (enum spool_counter)i) : 0;

        c->count[i] = known && n > waiting.count[i] ? n - waiting.count[i] : 0;
        /* No spool, no counters: what they hold is unknown, not 0. */
        c->unknown[i] = sp ? spool_count_unknown(sp, (enum spool_counter)i) : true;
        json_object_object_add(data, count_fields[i], json_object_new_uint64(c->count[i]));
        if (c->unknown[i])
            json_object_object_add(data, unknown_fields[i], json_object_new_boolean(1));
    }
}

/* The spool could not take this run's event: one POST of it, or it is
 * lost (returns spool_r). */
static int send_unspooled(const struct profile *p, struct spool *sp, const char *json, const char *id, bool send,
                          int spool_r, const struct carried *c, struct delivery_summary *sum)
{
    struct sender snd;
    long status = 0;
    int r = spool_r;

    if (!send) {
        say(sum, "%s; it was to be spooled only, not sent", sum->spool_error);
        return r;
    }
    if (start_sender(p, &snd, sum) == 0 &&
        post(&snd, CE_STRUCTURED, json, strlen(json), id, &status) == HTTP_DELIVERED) {
        sum->own_delivered = sum->own_direct = true;
        /* Never in the spool: nothing to remove first. */
        clear_carried(sp, c);
        r = 0;
    } else {
        char why[sizeof(sum->error)];
        (void)snprintf(why, sizeof(why), "%s", sum->error);
        say(sum, "could not spool it (%s) and sending it directly failed: %s", sum->spool_error, why);
    }
    stop_sender(&snd);
    return r;
}

/* The event is spooled: this run's event first, sent from memory (the
 * deadline goes to what the operator waits for, and a fault reading its
 * file back cannot cost it), then the backlog oldest first. */
static void send_spool(const struct profile *p, struct spool *sp, const char *json, const char *id,
                       const struct carried *c, struct delivery_summary *sum)
{
    struct spool_entry *e = NULL;
    struct sender snd;
    struct loaded l;
    enum http_outcome o;
    long status = 0;
    size_t n = 0;
    int r;

    if (start_sender(p, &snd, sum) < 0)
        goto out;
    o = post(&snd, CE_STRUCTURED, json, strlen(json), id, &status);
    if (o == HTTP_DELIVERED) {
        sum->delivered++;
        sum->own_delivered = true;
    } else if (o != HTTP_REJECTED) {
        snd.network_down = true;
    }
    r = spool_list(sp, &e, &n);
    if (r < 0) {
        say(sum, "cannot list the report spool '%s': %s", spool_path(sp), strerror(-r));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].id, id) == 0) {
            /* What it carried is reported once its file is gone. */
            if (sum->own_delivered)
                delivered(sp, &e[i], c, sum);
            else if (o == HTTP_REJECTED)
                rejected(sp, &e[i], status, sum);
        } else if (!snd.network_down && load_event(sp, &e[i], sum, &l) == 0) {
            send_loaded(&snd, sp, &l);
            free_loaded(&l);
        }
    }
out:
    free(e);
    stop_sender(&snd);
}

int delivery_report(const struct profile *p, json_object *data, bool send, struct delivery_summary *ret)
{
    struct delivery_summary sum = { 0 };
    struct spool *sp = NULL;
    struct carried carried;
    char *json = NULL, id[REPORT_ID_LEN + 1];
    int spooled, sync_error = 0, r;

    spooled = open_spool(p, &sp, sum.spool_error, sizeof(sum.spool_error));
    if (sp)
        warn_damage(sp);
    add_counts(sp, data, &carried);
    r = report_event(data, &json, id);
    if (r < 0) {
        say(&sum, "cannot build the report: %s", strerror(-r));
        goto out;
    }
    /* Spooled before it is sent: a run killed mid-send loses nothing. */
    if (sp) {
        spooled = spool_put(sp, id, json, strlen(json), &sync_error);
        if (sync_error)
            log_warn("report spooled in %s, but syncing the directory failed (%s): a crash may still lose it",
                     spool_path(sp), strerror(-sync_error));
        if (spooled < 0)
            (void)snprintf(sum.spool_error, sizeof(sum.spool_error), "cannot write to the report spool '%s': %s",
                           spool_path(sp), strerror(-spooled));
    }
    if (spooled < 0)
        r = send_unspooled(p, sp, json, id, send, spooled, &carried, &sum);
    else if (send)
        send_spool(p, sp, json, id, &carried, &sum);
    if (sp)
        count_waiting(sp, &sum);
    else
        sum.waiting_unknown = true;
out:
    free(json);
    spool_close(sp);
    *ret = sum;
    return r;
}

int delivery_flush(const struct profile *p, struct delivery_summary *ret)
{
    struct delivery_summary sum = { 0 };
    struct spool *sp = NULL;
    struct spool_entry *e = NULL;
    struct sender snd = { 0 };
    size_t n = 0;
    bool single = false;
    int r;

    r = open_spool(p, &sp, sum.error, sizeof(sum.error));
    if (r < 0) {
        sum.waiting_unknown = true;
        goto out;
    }
    warn_damage(sp);
    r = spool_list(sp, &e, &n);
    if (r < 0) {
        say(&sum, "cannot list the report spool '%s': %s", spool_path(sp), strerror(-r));
        sum.waiting_unknown = true;
        goto out;
    }
    if (n > 0 && start_sender(p, &snd, &sum) == 0)
        for (size_t i = 0; i < n && !snd.network_down; i += DELIVERY_BATCH_MAX_EVENTS)
            flush_chunk(&snd, sp, &e[i], n - i, &single);
    count_waiting(sp, &sum);
    r = 0;
out:
    free(e);
    stop_sender(&snd);
    spool_close(sp);
    *ret = sum;
    return r;
}

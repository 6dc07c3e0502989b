#include "delivery.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
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

int delivery_read_token(const char *path, char **ret_token, char *why, size_t why_len)
{
    struct stat st;
    char *buf = NULL;
    size_t len;
    int r = fsutil_read_file(path, TOKEN_MAX_BYTES, false, &buf, &len, &st);

    if (r < 0) {
        (void)snprintf(why, why_len, "cannot read token file '%s': %s", path, fsutil_strerror(r));
        return r;
    }
    /* As ssh does with private keys: a secret others can read is refused. */
    if (st.st_mode & 077) {
        (void)snprintf(why, why_len, "token file '%s' is accessible by group or others (mode %04o); "
                       "chmod 0600 it", path, (unsigned)(st.st_mode & 07777));
        r = -EPERM;
        goto out;
    }
    if (geteuid() == 0 && st.st_uid != 0) {
        (void)snprintf(why, why_len, "token file '%s' is owned by uid %u, not root", path, (unsigned)st.st_uid);
        r = -EPERM;
        goto out;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] <= ' ' || buf[i] > '~') {
            (void)snprintf(why, why_len, "token file '%s' must hold one line of visible ASCII", path);
            r = -EINVAL;
            goto out;
        }
    if (len == 0) {
        (void)snprintf(why, why_len, "token file '%s' is empty", path);
        r = -EINVAL;
        goto out;
    }
    *ret_token = buf;
    buf = NULL;
    r = 0;
out:
    if (buf) {
        explicit_bzero(buf, len);
        free(buf);
    }
    return r;
}

static void free_token(char *token)
{
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
}

struct sender {
    const struct profile *p;
    char *token;
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

    if (http_post(&req, &res) < 0) {
        say(snd->sum, "cannot send to %s: invalid request", snd->p->report.url);
        return HTTP_FAILED;
    }
    *ret_status = res.status;
    if (res.outcome != HTTP_DELIVERED)
        say(snd->sum, "%s: %s (%s after %u attempt%s)", snd->p->report.url, res.error,
            http_outcome_name(res.outcome), res.attempts, res.attempts == 1 ? "" : "s");
    return res.outcome;
}

/* Sends one spooled event; removes it only after a 2xx. */
static void send_one(struct sender *snd, struct spool *sp, const struct spool_entry *e)
{
    char *json = NULL;
    size_t len;
    long status = 0;
    enum http_outcome o;

    if (e->error || spool_read(sp, e, &json, &len) < 0) {
        log_warn("spooled report %s/%s cannot be read; left in place", spool_path(sp), e->name);
        return;
    }
    o = post(snd, "application/cloudevents+json", json, len, e->id, &status);
    free(json);
    if (o == HTTP_DELIVERED) {
        if (spool_remove(sp, e) < 0)
            log_warn("report %s delivered but not removed from %s; the collector may see it twice", e->id,
                     spool_path(sp));
        snd->sum->delivered++;
    } else if (o == HTTP_REJECTED) {
        /* Kept: the operator decides, and nothing is deleted before a 2xx. */
        snd->sum->rejected++;
    } else {
        snd->network_down = true;
    }
}

/* One batch of up to DELIVERY_BATCH_MAX_EVENTS. Returns 1 when the
 * collector refused the batch as such (send them one by one), else 0. */
static int send_batch(struct sender *snd, struct spool *sp, const struct spool_entry *e, size_t n)
{
    json_object *batch = json_object_new_array();
    const char *body;
    long status = 0;
    enum http_outcome o;
    size_t used = 0;

    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        size_t len;
        json_object *ev;

        if (e[i].error || spool_read(sp, &e[i], &json, &len) < 0)
            continue;
        /* Parsed and re-serialised: the batch is built by the JSON library. */
        ev = json_tokener_parse(json);
        free(json);
        if (!ev) {
            log_warn("spooled report %s/%s is not JSON; left in place", spool_path(sp), e[i].name);
            continue;
        }
        json_object_array_add(batch, ev);
        used++;
    }
    if (used == 0) {
        json_object_put(batch);
        return 0;
    }
    body = json_object_to_json_string_ext(batch, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    o = post(snd, "application/cloudevents-batch+json", body, strlen(body), NULL, &status);
    json_object_put(batch);
    if (o == HTTP_DELIVERED) {
        for (size_t i = 0; i < n; i++)
            if (!e[i].error && spool_remove(sp, &e[i]) == 0)
                snd->sum->delivered++;
        return 0;
    }
    /* 400/404/405/413/415: this collector does not take batches. */
    if (o == HTTP_REJECTED && (status == 400 || status == 404 || status == 405 || status == 413 || status == 415))
        return 1;
    if (o == HTTP_REJECTED)
        snd->sum->rejected += (unsigned)used;
    else
        snd->network_down = true;
    return 0;
}

static void count_waiting(struct spool *sp, struct delivery_summary *sum)
{
    struct spool_entry *e = NULL;
    size_t n = 0;

    if (spool_list(sp, &e, &n) == 0)
        sum->waiting = (unsigned)n;
    free(e);
}

static int open_spool(const struct profile *p, struct spool **ret, struct delivery_summary *sum)
{
    int r = spool_open(p->report.spool_dir, p->report.spool_max_events, DELIVERY_SPOOL_MAX_BYTES, ret);
    if (r < 0)
        say(sum, "cannot open the report spool '%s': %s", p->report.spool_dir, strerror(-r));
    return r;
}

static int start_sender(const struct profile *p, struct sender *snd, struct delivery_summary *sum)
{
    char why[512];
    int r;

    memset(snd, 0, sizeof(*snd));
    snd->p = p;
    snd->sum = sum;
    if (p->report.token_file) {
        r = delivery_read_token(p->report.token_file, &snd->token, why, sizeof(why));
        if (r < 0) {
            say(sum, "%s", why);
            return r;
        }
    }
    snd->deadline_ms = http_now_ms() + (uint64_t)p->report.timeout_s * 1000;
    return 0;
}

void delivery_splay(const struct profile *p)
{
    uint32_t r;
    struct timespec ts;
    uint64_t ms;

    if (p->report.splay_s == 0)
        return;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint32_t)getpid();
    ms = r % ((uint64_t)p->report.splay_s * 1000 + 1);
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    log_debug("splay: waiting %llu ms before reporting", (unsigned long long)ms);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int delivery_report(const struct profile *p, json_object *data, bool send, struct delivery_summary *ret)
{
    struct delivery_summary sum = { 0 };
    struct spool *sp = NULL;
    struct spool_entry *e = NULL;
    struct sender snd = { 0 };
    char *json = NULL, id[REPORT_ID_LEN + 1];
    uint64_t dropped;
    size_t n = 0;
    int r;

    r = open_spool(p, &sp, &sum);
    if (r < 0) {
        json_object_put(data);
        goto out;
    }
    dropped = spool_dropped(sp);
    json_object_object_add(data, "reports_dropped", json_object_new_uint64(dropped));
    r = report_event(data, &json, id);
    if (r < 0) {
        say(&sum, "cannot build the report: %s", strerror(-r));
        goto out;
    }
    /* Spooled before it is sent: a run killed mid-send loses nothing. */
    r = spool_put(sp, id, json, strlen(json));
    if (r < 0) {
        say(&sum, "cannot spool the report in '%s': %s", spool_path(sp), strerror(-r));
        goto out;
    }

    if (!send) {
        count_waiting(sp, &sum);
        r = 0;
        goto out;
    }
    if (start_sender(p, &snd, &sum) < 0) {
        count_waiting(sp, &sum);
        r = 0;
        goto out;
    }
    r = spool_list(sp, &e, &n);
    if (r < 0) {
        say(&sum, "cannot list the report spool '%s': %s", spool_path(sp), strerror(-r));
        goto out;
    }
    for (size_t i = 0; i < n && !snd.network_down; i++) {
        unsigned before = sum.delivered;
        send_one(&snd, sp, &e[i]);
        if (strcmp(e[i].id, id) == 0 && sum.delivered > before)
            sum.own_delivered = true;
    }
    /* The drops this report carried are reported: stop counting them. */
    if (sum.own_delivered && dropped > 0)
        spool_clear_dropped(sp, dropped);
    count_waiting(sp, &sum);
    r = 0;
out:
    free(e);
    free(json);
    free_token(snd.token);
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

    r = open_spool(p, &sp, &sum);
    if (r < 0)
        goto out;
    r = spool_list(sp, &e, &n);
    if (r < 0) {
        say(&sum, "cannot list the report spool '%s': %s", spool_path(sp), strerror(-r));
        goto out;
    }
    if (n > 0 && start_sender(p, &snd, &sum) == 0) {
        for (size_t i = 0; i < n && !snd.network_down;) {
            size_t chunk = n - i < DELIVERY_BATCH_MAX_EVENTS ? n - i : DELIVERY_BATCH_MAX_EVENTS;
            if (!single && send_batch(&snd, sp, &e[i], chunk) == 1) {
                log_info("the collector does not take batches; sending one event at a time");
                single = true;
                continue;
            }
            if (single)
                send_one(&snd, sp, &e[i]), chunk = 1;
            i += chunk;
        }
    }
    count_waiting(sp, &sum);
    r = 0;
out:
    free(e);
    free_token(snd.token);
    spool_close(sp);
    *ret = sum;
    return r;
}

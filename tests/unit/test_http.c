/* POST with retries, against a tiny server thread on 127.0.0.1 that plays
 * one canned answer per connection (or, keep_alive, per request, on as
 * few connections as the client uses). Timing bounds are checked on
 * CLOCK_MONOTONIC, the clock of the deadline. */
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "cleanup.h"
#include "clock.h"
#include "helpers.h"
#include "http.h"
#include "params.h"

#define TOKEN "tok-3f9a7c-SECRET"
#define EVENT_ID "6c1f3a5e-8d7b-4c2a-9e0f-1a2b3c4d5e6f"
#define BODY "{\"specversion\":\"1.0\",\"id\":\"" EVENT_ID "\"}"
/* How far from a computed bound an end may land: scheduling, ASan. */
#define SLACK_MS 200

/* ---- the server ---------------------------------------------------------- */

struct step {
    const char *head;    /* status line and headers as sent; NULL: never answer */
    unsigned delay_ms;   /* before answering */
    uint64_t body_bytes; /* 'x' bytes after the head; UINT64_MAX: endless */
};

#define MAX_KEPT_REQUESTS 8

struct server {
    int fd;
    unsigned short port;
    const struct step *steps;
    size_t nsteps;
    bool keep_alive; /* read the next request on the same connection */
    atomic_uint connections;
    atomic_uint requests;
    atomic_bool stop;
    pthread_t thread;
    /* The first requests, each with the connection it came on (1-based). */
    char request[MAX_KEPT_REQUESTS][4096];
    unsigned request_connection[MAX_KEPT_REQUESTS];
};

/* A step: the head, sent at once with no body. */
#define ANSWER(head) { head, 0, 0 }
#define CLOSE "Content-Length: 0\r\nConnection: close\r\n\r\n"
#define OK_202 "HTTP/1.1 202 Accepted\r\n" CLOSE
#define ERR_500 "HTTP/1.1 500 Internal Server Error\r\n" CLOSE
#define ERR_503 "HTTP/1.1 503 Service Unavailable\r\n" CLOSE
/* The same answers leaving the connection open, as a collector does. */
#define KEEP_202 "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
#define KEEP_500 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

/* Waits until fd is readable; false once the test says stop. */
static bool wait_readable(struct server *sv, int fd)
{
    while (!atomic_load(&sv->stop)) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int n = poll(&p, 1, 20);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
    return false;
}

/* The head, then Content-Length bytes of body. */
static size_t read_request(struct server *sv, int fd, char *buf, size_t cap)
{
    size_t len = 0, need = SIZE_MAX;

    while (len + 1 < cap && wait_readable(sv, fd)) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (need == SIZE_MAX) {
            char *end = strstr(buf, "\r\n\r\n"), *cl;
            if (end) {
                unsigned long long body = 0;
                cl = strcasestr(buf, "\r\nContent-Length:");
                if (cl && cl < end) {
                    char *num_end;
                    errno = 0;
                    body = strtoull(cl + 17, &num_end, 10);
                    cr_assert(errno == 0 && num_end != cl + 17);
                }
                need = (size_t)(end + 4 - buf) + (size_t)body;
            }
        }
        if (len >= need)
            break;
    }
    buf[len] = '\0';
    return len;
}

static bool send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static void play(struct server *sv, int fd, const struct step *st)
{
    static char chunk[64 * 1024];

    for (unsigned waited = 0; waited < st->delay_ms && !atomic_load(&sv->stop); waited += 10)
        usleep(10 * 1000);
    if (!st->head) {
        char sink[512];
        /* Never answer; wait for the client to give up. */
        while (wait_readable(sv, fd) && read(fd, sink, sizeof(sink)) > 0)
            ;
        return;
    }
    if (!send_all(fd, st->head, strlen(st->head)))
        return;
    memset(chunk, 'x', sizeof(chunk));
    for (uint64_t sent = 0; sent < st->body_bytes && !atomic_load(&sv->stop);) {
        uint64_t n = st->body_bytes - sent < sizeof(chunk) ? st->body_bytes - sent : sizeof(chunk);
        if (!send_all(fd, chunk, (size_t)n))
            return; /* the client cut the transfer */
        sent += n;
    }
}

static void *serve(void *arg)
{
    struct server *sv = arg;
    size_t next = 0;

    while (!atomic_load(&sv->stop)) {
        char request[4096];
        unsigned connection, n;
        int c;

        if (!wait_readable(sv, sv->fd))
            break;
        c = accept4(sv->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        connection = atomic_fetch_add(&sv->connections, 1) + 1;
        read_request(sv, c, request, sizeof(request));
        for (;;) {
            n = atomic_fetch_add(&sv->requests, 1);
            if (n < MAX_KEPT_REQUESTS) {
                snprintf(sv->request[n], sizeof(sv->request[n]), "%s", request);
                sv->request_connection[n] = connection;
            }
            /* Past the script: close at once (the client sees nothing). */
            if (next >= sv->nsteps)
                break;
            play(sv, c, &sv->steps[next++]);
            if (!sv->keep_alive)
                break;
            if (read_request(sv, c, request, sizeof(request)) == 0)
                break; /* the client closed it */
        }
        close(c);
    }
    return NULL;
}

/* On the heap: the requests it keeps are too large for a stack frame. */
static struct server *server_start(const struct step *steps, size_t nsteps, bool keep_alive)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof(addr);
    struct server *sv = calloc(1, sizeof(*sv));

    cr_assert_not_null(sv);
    sv->steps = steps;
    sv->nsteps = nsteps;
    sv->keep_alive = keep_alive;
    sv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(sv->fd, 0);
    cr_assert_eq(bind(sv->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    cr_assert_eq(listen(sv->fd, 16), 0);
    cr_assert_eq(getsockname(sv->fd, (struct sockaddr *)&addr, &addr_len), 0);
    sv->port = ntohs(addr.sin_port);
    cr_assert_eq(pthread_create(&sv->thread, NULL, serve, sv), 0);
    return sv;
}

static void server_stop(struct server *sv)
{
    if (!sv)
        return;
    atomic_store(&sv->stop, true);
    pthread_join(sv->thread, NULL);
    close(sv->fd);
}

/* A port nothing listens on: a server's, once it has stopped. */
static unsigned short unused_port(void)
{
    CLEANUP_FREE struct server *sv = server_start(NULL, 0, false);

    server_stop(sv);
    return sv->port;
}

/* ---- helpers ------------------------------------------------------------- */

static char url_buf[128];

/* timeout_ms < 0: a deadline already past. */
static struct http_request request_to(unsigned short port, int64_t timeout_ms)
{
    snprintf(url_buf, sizeof(url_buf), "http://127.0.0.1:%u/v1/events", port);
    return (struct http_request){
        .url = url_buf,
        .content_type = "application/cloudevents+json",
        .body = BODY,
        .body_len = strlen(BODY),
        .bearer_token = TOKEN,
        .idempotency_key = EVENT_ID,
        .deadline_ms = clock_monotonic_ms() + (uint64_t)timeout_ms,
    };
}

static void expect_no_token(const struct http_result *res)
{
    cr_expect_null(strcasestr(res->error, TOKEN), "error \"%s\" holds the token", res->error);
}

/* Serves steps, posts to the server with 5 s to go, stops it. */
static struct server *run_steps(const struct step *steps, size_t nsteps, struct http_request *req,
                                struct http_result *res)
{
    struct server *sv = server_start(steps, nsteps, false);

    *req = request_to(sv->port, 5000);
    cr_assert_eq(http_post(req, res), 0);
    server_stop(sv);
    expect_no_token(res);
    return sv;
}

TestSuite(http, .timeout = 30);

/* ---- tests --------------------------------------------------------------- */

Test(http, delivers_with_the_headers_and_body_on_the_wire)
{
    static const struct step steps[] = { ANSWER(OK_202) };
    CLEANUP_FREE struct server *sv = NULL;
    struct http_request req;
    struct http_result res;
    const char *body;

    sv = run_steps(steps, ELEMENTSOF(steps), &req, &res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.status, 202);
    cr_expect_eq(res.attempts, 1);
    cr_expect_str_empty(res.error);
    cr_expect_eq(atomic_load(&sv->connections), 1);

    cr_expect_eq(strncmp(sv->request[0], "POST /v1/events HTTP/1.1\r\n", 26), 0, "%s", sv->request[0]);
    cr_expect_not_null(strstr(sv->request[0], "\r\nAuthorization: Bearer " TOKEN "\r\n"));
    cr_expect_not_null(strstr(sv->request[0], "\r\nIdempotency-Key: \"" EVENT_ID "\"\r\n"));
    cr_expect_not_null(strstr(sv->request[0], "\r\nContent-Type: application/cloudevents+json\r\n"));
    cr_expect_not_null(strstr(sv->request[0], "\r\nUser-Agent: shmprov\r\n"));
    cr_expect_null(strcasestr(sv->request[0], "\r\nExpect:"), "no 100-continue round trip");
    body = strstr(sv->request[0], "\r\n\r\n");
    cr_assert_not_null(body);
    cr_expect_str_eq(body + 4, BODY);
}

/* A post a server answers 202 must be delivered. As a first post it loads
 * libcurl, so that a short deadline afterwards is spent on the answer
 * rather than on loading the library. */
static void warm_up(void)
{
    static const struct step steps[] = { ANSWER(OK_202) };
    struct http_request req;
    struct http_result res;

    free(run_steps(steps, ELEMENTSOF(steps), &req, &res));
    cr_assert_eq(res.outcome, HTTP_DELIVERED, "%s", res.error);
}

/* ---- one post against a script: what it ends with, and when ------------- */

/* For attempts: at least n (AT_LEAST(0): any number). */
#define AT_LEAST(n) (-(n) - 1)
/* For status: any negative number. */
#define NEGATIVE_STATUS LONG_MIN
#define STEPS(...)                                 \
    .steps = (const struct step[]){ __VA_ARGS__ }, \
    .nsteps = sizeof((const struct step[]){ __VA_ARGS__ }) / sizeof(struct step)

struct post_case {
    const char *name;
    const struct step *steps; /* none: nothing listens on the port */
    size_t nsteps;
    const char *url;    /* instead of the server's */
    int64_t timeout_ms; /* the deadline, from when the request is made */
    bool warm_up;       /* libcurl loaded first: a short deadline goes to the answer */
    bool keep_alive;    /* the server answers each request on the same connection */
    /* What the post must end with: */
    enum http_outcome outcome;
    int attempts;          /* exactly, or AT_LEAST(n) */
    long status;           /* exactly, or NEGATIVE_STATUS */
    const char *error;     /* exactly, when not NULL */
    const char *error_has; /* somewhere in the error, when not NULL */
    unsigned connections;  /* the server saw exactly these, when not 0 */
    uint64_t min_ms, max_ms; /* from the request to the end (max_ms 0: no bound) */
};

static const struct post_case post_cases[] = {
    /* A retry goes on the session's connection when the server keeps it. */
    { .name = "a_session_retries_on_its_connection", STEPS(ANSWER(KEEP_500), ANSWER(KEEP_202)), .keep_alive = true,
      .timeout_ms = 5000, .outcome = HTTP_DELIVERED, .attempts = 2, .status = 202, .connections = 1 },
    /* First wait: random in [0, 250 ms]. */
    { .name = "retries_a_500_after_a_jittered_wait", STEPS(ANSWER(ERR_500), ANSWER(OK_202)), .timeout_ms = 5000,
      .outcome = HTTP_DELIVERED, .attempts = 2, .status = 202, .max_ms = 250 + SLACK_MS },
    /* Waits within [0,250] + [0,500] + [0,1000]. */
    { .name = "backoff_grows_on_503_and_408", .timeout_ms = 10000,
      STEPS(ANSWER(ERR_503), ANSWER("HTTP/1.1 408 Request Timeout\r\n" CLOSE), ANSWER(ERR_503), ANSWER(OK_202)),
      .outcome = HTTP_DELIVERED, .attempts = 4, .status = 202, .max_ms = 1750 + SLACK_MS },
    /* Not back before Retry-After. */
    { .name = "honours_retry_after", .timeout_ms = 5000,
      STEPS(ANSWER("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n" CLOSE), ANSWER(OK_202)),
      .outcome = HTTP_DELIVERED, .attempts = 2, .status = 202, .min_ms = 1000, .max_ms = 1000 + 250 + SLACK_MS },
    /* Ten years: must neither overflow into a short wait nor be slept. */
    { .name = "retry_after_past_the_deadline_gives_up_at_once", .timeout_ms = 3000,
      STEPS(ANSWER("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 315360000\r\n" CLOSE), ANSWER(OK_202)),
      .outcome = HTTP_RETRY_LATER, .attempts = 1, .status = 503, .error_has = "Retry-After", .max_ms = SLACK_MS },
    { .name = "absurd_retry_after_is_harmless", .timeout_ms = 1500,
      STEPS(ANSWER("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 99999999999999999999999999\r\n" CLOSE),
            ANSWER("HTTP/1.1 429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2205 07:28:00 GMT\r\n" CLOSE),
            ANSWER("HTTP/1.1 429 Too Many Requests\r\nRetry-After: -5\r\n" CLOSE)),
      .outcome = HTTP_RETRY_LATER, .attempts = AT_LEAST(0), .status = 429, .max_ms = 1500 + SLACK_MS },
    /* RFC 9110 §15: a status outside 100..599 is handled as a 5xx; a 1xx
     * with the connection closed after it never said anything final. Both
     * found by tests/fuzz (fuzz_http_answer), which saw them rejected. */
    { .name = "an_invalid_status_is_retried_like_a_5xx", .timeout_ms = 10000,
      STEPS(ANSWER("HTTP/1.1 600 Six\r\n" CLOSE), ANSWER("HTTP/2 2000\r\n\r\n"),
            ANSWER("HTTP/1.1 100 Continue\r\n\r\n"), ANSWER("HTTP/2 -5\r\n\r\n"), ANSWER(OK_202)),
      .outcome = HTTP_DELIVERED, .attempts = 5, .status = 202 },
    /* Under 100 ms: no time for a second attempt. */
    { .name = "an_invalid_status_at_the_deadline_says_so", .timeout_ms = 80, .warm_up = true,
      STEPS(ANSWER("HTTP/1.1 999 Whatever\r\n" CLOSE)),
      .outcome = HTTP_RETRY_LATER, .attempts = 1, .status = 999,
      .error = "gave up at the deadline after 1 attempts: server answered HTTP 999, not a valid status" },
    /* libcurl 7.88 wraps "HTTP/2 <digits>" past INT_MAX; this said
     * "gave up ...: No error" before. */
    { .name = "a_negative_status_is_not_reported_as_no_error", .timeout_ms = 80, .warm_up = true,
      STEPS(ANSWER("HTTP/2 206666666666666666666666660\n")),
      .outcome = HTTP_RETRY_LATER, .attempts = 1, .status = NEGATIVE_STATUS,
      .error = "gave up at the deadline after 1 attempts: server answered a status line that is not valid" },
    { .name = "other_4xx_is_rejected_without_retry", .timeout_ms = 5000,
      STEPS(ANSWER("HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request"),
            ANSWER(OK_202)),
      .outcome = HTTP_REJECTED, .attempts = 1, .status = 400, .error = "server answered HTTP 400", .connections = 1 },
    /* Delivered: the status line said 200. */
    { .name = "a_huge_body_is_cut_not_read", .timeout_ms = 10000,
      STEPS({ "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\nConnection: close\r\n\r\n", 0, 10485760 }),
      .outcome = HTTP_DELIVERED, .attempts = 1, .status = 200, .max_ms = 1000 },
    { .name = "an_endless_error_body_is_cut_and_retried", .timeout_ms = 5000,
      STEPS({ "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n", 0, UINT64_MAX }, ANSWER(OK_202)),
      .outcome = HTTP_DELIVERED, .attempts = 2, .status = 202, .max_ms = 250 + 1000 },
    { .name = "a_slow_answer_within_the_deadline_is_waited_for", .timeout_ms = 3000, STEPS({ OK_202, 800, 0 }),
      .outcome = HTTP_DELIVERED, .attempts = 1, .status = 202, .min_ms = 800 },
    /* Never answers: it ends at the deadline, give or take SLACK_MS. */
    { .name = "a_hanging_server_ends_at_the_deadline", .timeout_ms = 1500, STEPS(ANSWER(NULL)),
      .outcome = HTTP_RETRY_LATER, .attempts = 1, .status = 0, .error_has = "deadline",
      .min_ms = 1500 - SLACK_MS, .max_ms = 1500 + SLACK_MS },
    /* The first wait is at most 250 ms, so at least two attempts; the last
     * wait is cut to leave one attempt just before the deadline. */
    { .name = "refused_connections_are_retried_until_the_deadline", .timeout_ms = 2000,
      .outcome = HTTP_RETRY_LATER, .attempts = AT_LEAST(2), .status = 0,
      .min_ms = 2000 - 400, .max_ms = 2000 + SLACK_MS },
    { .name = "a_past_deadline_sends_nothing", .timeout_ms = -1,
      .outcome = HTTP_RETRY_LATER, .attempts = 0, .status = 0 },
    /* Not retried. */
    { .name = "only_http_and_https", .url = "ftp://127.0.0.1:1/x", .timeout_ms = 2000,
      .outcome = HTTP_FAILED, .attempts = 1, .status = 0, .max_ms = SLACK_MS },
    /* libcurl quotes the scheme it does not know (lowercased): here, the
     * token. */
    { .name = "the_token_never_reaches_an_error_message", .url = TOKEN "://127.0.0.1/", .timeout_ms = 2000,
      .outcome = HTTP_FAILED, .attempts = AT_LEAST(0), .status = 0 },
};

static void expect_post_case(const struct post_case *c, const struct http_result *res, uint64_t elapsed,
                             unsigned connections)
{
    const char *n = c->name;

    cr_expect_eq(res->outcome, c->outcome, "%s: %s: %s", n, http_outcome_name(res->outcome), res->error);
    cr_expect_eq(res->error[0] == '\0', res->outcome == HTTP_DELIVERED, "%s: error \"%s\"", n, res->error);
    expect_no_token(res);
    if (c->attempts >= 0)
        cr_expect_eq(res->attempts, (unsigned)c->attempts, "%s: %u attempts", n, res->attempts);
    else
        cr_expect_geq(res->attempts, (unsigned)(-c->attempts - 1), "%s: %u attempts", n, res->attempts);
    if (c->status == NEGATIVE_STATUS)
        cr_expect_lt(res->status, 0, "%s: status %ld", n, res->status);
    else
        cr_expect_eq(res->status, c->status, "%s: status %ld", n, res->status);
    if (c->error)
        cr_expect_str_eq(res->error, c->error, "%s", n);
    if (c->error_has)
        cr_expect_not_null(strstr(res->error, c->error_has), "%s: %s", n, res->error);
    if (c->connections)
        cr_expect_eq(connections, c->connections, "%s: %u connections", n, connections);
    cr_expect_geq(elapsed, c->min_ms, "%s: took %llu ms", n, (unsigned long long)elapsed);
    if (c->max_ms)
        cr_expect_leq(elapsed, c->max_ms, "%s: took %llu ms", n, (unsigned long long)elapsed);
}

ParameterizedTestParameters(http, post)
{
    INDEXES(post_cases);
}

ParameterizedTest(size_t *i, http, post)
{
    const struct post_case *c = &post_cases[*i];
    CLEANUP_FREE struct server *sv = NULL;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    if (c->warm_up)
        warm_up();
    if (c->nsteps > 0)
        sv = server_start(c->steps, c->nsteps, c->keep_alive);
    req = request_to(c->nsteps > 0 ? sv->port : unused_port(), c->timeout_ms);
    if (c->url)
        req.url = c->url;
    cr_assert_eq(http_post(&req, &res), 0);
    /* From when the deadline was set, so that min_ms and max_ms bound the
     * end against the deadline itself. */
    elapsed = clock_monotonic_ms() - (req.deadline_ms - (uint64_t)c->timeout_ms);
    if (c->nsteps > 0)
        server_stop(sv);
    expect_post_case(c, &res, elapsed, sv ? atomic_load(&sv->connections) : 0);
}

Test(http, bad_arguments)
{
    /* Each a field of a good request set to what http_post() refuses. */
    static const struct {
        size_t field;
        const char *value;
    } bad[] = {
        { offsetof(struct http_request, url), NULL },
        { offsetof(struct http_request, content_type), NULL },
        { offsetof(struct http_request, body), NULL },
        { offsetof(struct http_request, bearer_token), "tok\r\nX-Evil: 1" }, /* header injection */
        { offsetof(struct http_request, bearer_token), "two words" },
        { offsetof(struct http_request, bearer_token), "" },
        { offsetof(struct http_request, idempotency_key), "id\n" },
        { offsetof(struct http_request, content_type), "application/json\r\nX-Evil: 1" },
    };
    struct http_request good = request_to(unused_port(), 1000), req;
    struct http_session *s = NULL;
    struct http_result res;

    cr_expect_eq(http_post(NULL, &res), -EINVAL);
    cr_expect_eq(http_post(&good, NULL), -EINVAL);
    cr_expect_eq(http_session_open(NULL), -EINVAL);
    cr_expect_eq(http_session_post(NULL, &good, &res), -EINVAL);
    cr_assert_eq(http_session_open(&s), 0);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        req = good;
        *(const char **)((char *)&req + bad[i].field) = bad[i].value;
        cr_expect_eq(http_post(&req, &res), -EINVAL, "bad argument %zu", i);
        cr_expect_eq(http_session_post(s, &req, &res), -EINVAL, "bad argument %zu on a session", i);
    }
    http_session_close(s);
    http_session_close(NULL);
}

/* ---- sessions: one connection for a run's requests ----------------------- */

/* Posts req on s; the outcome must be delivered in one attempt. */
static void post_delivered(struct http_session *s, const struct http_request *req)
{
    struct http_result res;

    cr_assert_eq(http_session_post(s, req, &res), 0);
    cr_expect_eq(res.outcome, HTTP_DELIVERED, "%s", res.error);
    cr_expect_eq(res.attempts, 1);
    expect_no_token(&res);
}

Test(http, a_session_carries_every_request_on_one_connection)
{
    static const struct step steps[] = { ANSWER(KEEP_202), ANSWER(KEEP_202), ANSWER(KEEP_202), ANSWER(KEEP_202) };
    static const char *const keys[] = { EVENT_ID, "7d2e4b6f-9e8c-4d3b-8f1a-2b3c4d5e6f70", "batch-0123abcd", NULL };
    struct http_session *s = NULL;
    struct http_request req;
    CLEANUP_FREE struct server *sv = NULL;

    sv = server_start(steps, 4, true);
    cr_assert_eq(http_session_open(&s), 0);
    for (int i = 0; i < 4; i++) {
        req = request_to(sv->port, 5000);
        req.idempotency_key = keys[i];
        /* Nothing carries over from the request before: not the token, nor
         * the key. The last is a batch with neither. */
        if (i == 1 || i == 3)
            req.bearer_token = NULL;
        if (i == 3)
            req.content_type = "application/cloudevents-batch+json";
        post_delivered(s, &req);
    }
    http_session_close(s);
    server_stop(sv);
    cr_expect_eq(atomic_load(&sv->connections), 1, "one connection (one handshake) for the session");
    cr_expect_eq(atomic_load(&sv->requests), 4);
    for (int i = 0; i < 3; i++) {
        char want[128];

        snprintf(want, sizeof(want), "\r\nIdempotency-Key: \"%s\"\r\n", keys[i]);
        cr_expect_eq(sv->request_connection[i], 1);
        cr_expect_not_null(strstr(sv->request[i], want), "request %d: %s", i, sv->request[i]);
        cr_expect_eq(strstr(sv->request[i], "\r\nAuthorization: Bearer " TOKEN "\r\n") != NULL, i != 1,
                     "request %d: %s", i, sv->request[i]);
    }
    cr_expect_null(strcasestr(sv->request[3], "Authorization:"));
    cr_expect_null(strcasestr(sv->request[3], "Idempotency-Key:"));
    cr_expect_not_null(strstr(sv->request[3], "Content-Type: application/cloudevents-batch+json\r\n"));
}

/* A server that closes the connection after each answer, saying so or
 * not: the next request opens a new one, unseen by the caller. */
Test(http, a_session_reopens_a_connection_the_server_closed)
{
    static const struct step said[] = { ANSWER(OK_202), ANSWER(OK_202) };
    static const struct step unsaid[] = { ANSWER(KEEP_202), ANSWER(KEEP_202) };
    const struct step *scripts[] = { said, unsaid };

    for (int i = 0; i < 2; i++) {
        struct http_session *s = NULL;
        struct http_request req;
        CLEANUP_FREE struct server *sv = NULL;

        sv = server_start(scripts[i], 2, false);
        cr_assert_eq(http_session_open(&s), 0);
        req = request_to(sv->port, 5000);
        post_delivered(s, &req);
        usleep(50 * 1000);
        post_delivered(s, &req);
        http_session_close(s);
        server_stop(sv);
        cr_expect_eq(atomic_load(&sv->connections), 2, "script %d", i);
        cr_expect_eq(atomic_load(&sv->requests), 2, "script %d", i);
    }
}

/* A redirect is refused and not followed, on a session's later requests
 * too: the token never goes to another server. */
Test(http, a_session_keeps_the_policy_on_every_request)
{
    static const struct step elsewhere_steps[] = { ANSWER(KEEP_202) };
    CLEANUP_FREE struct server *sv = NULL, *elsewhere = NULL;
    struct http_session *s = NULL;
    struct http_request req;
    struct http_result res;
    char head[256];
    const struct step steps[] = { ANSWER(KEEP_202), ANSWER(head) };

    elsewhere = server_start(elsewhere_steps, 1, false);
    snprintf(head, sizeof(head), "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%u/steal\r\n"
             "Content-Length: 0\r\n\r\n", elsewhere->port);
    sv = server_start(steps, 2, true);
    cr_assert_eq(http_session_open(&s), 0);
    req = request_to(sv->port, 5000);
    post_delivered(s, &req);
    cr_assert_eq(http_session_post(s, &req, &res), 0);
    http_session_close(s);
    server_stop(sv);
    server_stop(elsewhere);
    cr_expect_eq(res.outcome, HTTP_REJECTED, "the second request follows no redirect either");
    cr_expect_eq(res.status, 307);
    cr_expect_eq(res.attempts, 1);
    cr_expect_not_null(strstr(res.error, "redirect"), "%s", res.error);
    cr_expect_eq(atomic_load(&elsewhere->connections), 0, "the token went elsewhere");
    cr_expect_eq(atomic_load(&sv->connections), 1);
}

/* The wait after a retryable failure, from what libcurl read of
 * Retry-After: every value a curl_off_t can hold must give a wait inside
 * the budget (left - 100 ms) or a refusal, never a wrapped short wait. */
Test(http, retry_wait_table)
{
    static const struct {
        uint64_t left_ms, jitter_ms;
        int64_t retry_after_s;
        int ret;
        uint64_t wait_ms;
    } cases[] = {
        /* Less than one attempt's worth of time left. */
        { 0, 0, 0, -ETIME, 0 },
        { 99, 0, 0, -ETIME, 0 },
        { 99, 0, 1, -ETIME, 0 },
        /* No Retry-After (0, or a date in the past: negative). */
        { 100, 0, 0, 0, 0 },
        { 100, 250, 0, 0, 0 },
        { 5000, 250, 0, 0, 250 },
        { 5000, 250, -5, 0, 250 },
        { 5000, 250, INT64_MIN, 0, 250 },
        { 5000, 9000, 0, 0, 4900 },
        { 5000, UINT64_MAX, 0, 0, 4900 },
        /* Retry-After that fits: at least what was asked. */
        { 5000, 0, 1, 0, 1000 },
        { 5000, 250, 1, 0, 1250 },
        { 5000, 250, 4, 0, 4250 },
        { 5000, 900, 4, 0, 4900 },
        { 5000, UINT64_MAX, 4, 0, 4900 },
        { 1100, 0, 1, 0, 1000 },
        { 1100, 7, 1, 0, 1000 },
        /* Retry-After past the deadline: refused, whatever its size. */
        { 5000, 0, 5, -ERANGE, 0 },
        { 1099, 0, 1, -ERANGE, 0 },
        { 3000, 0, 315360000, -ERANGE, 0 },
        { 3000, 0, INT64_MAX, -ERANGE, 0 },
        { UINT64_MAX, 0, INT64_MAX, -ERANGE, 0 },
        /* The largest that fits: no wrap when the jitter is added. */
        { UINT64_MAX, 0, 18446744073709551, 0, UINT64_C(18446744073709551000) },
        { UINT64_MAX, UINT64_MAX, 18446744073709551, 0, UINT64_MAX - 100 },
        { UINT64_MAX, UINT64_MAX, 1, 0, UINT64_MAX - 100 },
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        uint64_t wait = 12345;
        int r = http_retry_wait(cases[i].left_ms, cases[i].jitter_ms, cases[i].retry_after_s, &wait);

        cr_expect_eq(r, cases[i].ret, "case %zu: returned %d", i, r);
        if (cases[i].ret == 0)
            cr_expect_eq(wait, cases[i].wait_ms, "case %zu: waits %llu ms", i, (unsigned long long)wait);
        else
            cr_expect_eq(wait, 12345, "case %zu: *ret_wait_ms written on failure", i);
    }
}

static bool libcurl_mapped(void)
{
    char line[512];
    bool found = false;
    FILE *f = fopen("/proc/self/maps", "re");

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        found = found || strstr(line, "/libcurl") != NULL;
    fclose(f);
    return found;
}

Test(http, libcurl_is_loaded_on_the_first_post_only)
{
    struct http_session *s = NULL;

    cr_assert_not(libcurl_mapped(), "libcurl is linked or loaded before any report");
    (void)clock_monotonic_ms();
    cr_assert_eq(http_session_open(&s), 0);
    http_session_close(s);
    cr_assert_not(libcurl_mapped(), "opening a session loads nothing");
    warm_up();
    cr_expect(libcurl_mapped());
}

Test(http, missing_libcurl_is_reported_as_unavailable)
{
    struct http_request req;
    struct http_result res;

    http_set_library_for_tests("libshmprov-no-such-curl.so.4");
    req = request_to(unused_port(), 2000);
    cr_assert_eq(http_post(&req, &res), 0);
    cr_expect_eq(res.outcome, HTTP_UNAVAILABLE);
    cr_expect_eq(res.attempts, 0);
    cr_expect_not_null(strstr(res.error, "libcurl could not be loaded"), "%s", res.error);
    cr_expect_not_null(strstr(res.error, "libshmprov-no-such-curl.so.4"), "%s", res.error);
    cr_expect_str_eq(http_outcome_name(res.outcome), "unavailable");

    /* A library without libcurl's symbols. */
    http_set_library_for_tests("libm.so.6");
    cr_assert_eq(http_post(&req, &res), 0);
    cr_expect_eq(res.outcome, HTTP_UNAVAILABLE);
    cr_expect_not_null(strstr(res.error, "curl_global_init"), "%s", res.error);

    http_set_library_for_tests(NULL);
    warm_up();
}

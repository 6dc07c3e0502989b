/* POST with retries, against a tiny server thread on 127.0.0.1 that plays
 * one canned answer per connection (or, keep_alive, per request, on as
 * few connections as the client uses). Timing bounds are checked on
 * CLOCK_MONOTONIC, the clock of the deadline. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

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
    char first_request[8192];
    size_t first_len;
    /* The first requests, each with the connection it came on (1-based). */
    char request[MAX_KEPT_REQUESTS][4096];
    unsigned request_connection[MAX_KEPT_REQUESTS];
};

#define OK_202 "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
#define ERR_500 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
#define ERR_503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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

static void keep_request(struct server *sv, const char *request, size_t len, unsigned connection)
{
    unsigned n = atomic_fetch_add(&sv->requests, 1);

    if (n == 0) {
        memcpy(sv->first_request, request, len + 1);
        sv->first_len = len;
    }
    if (n < MAX_KEPT_REQUESTS) {
        size_t kept = len < sizeof(sv->request[n]) ? len : sizeof(sv->request[n]) - 1;
        memcpy(sv->request[n], request, kept);
        sv->request[n][kept] = '\0';
        sv->request_connection[n] = connection;
    }
}

static void *serve(void *arg)
{
    struct server *sv = arg;
    size_t next = 0;

    while (!atomic_load(&sv->stop)) {
        char request[8192];
        size_t len;
        unsigned connection;
        int c;

        if (!wait_readable(sv, sv->fd))
            break;
        c = accept4(sv->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        connection = atomic_fetch_add(&sv->connections, 1) + 1;
        len = read_request(sv, c, request, sizeof(request));
        for (;;) {
            keep_request(sv, request, len, connection);
            /* Past the script: close at once (the client sees nothing). */
            if (next >= sv->nsteps)
                break;
            play(sv, c, &sv->steps[next++]);
            if (!sv->keep_alive)
                break;
            len = read_request(sv, c, request, sizeof(request));
            if (len == 0)
                break; /* the client closed it */
        }
        close(c);
    }
    return NULL;
}

static void server_start_with(struct server *sv, const struct step *steps, size_t nsteps, bool keep_alive)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof(addr);

    memset(sv, 0, sizeof(*sv));
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
}

static void server_start(struct server *sv, const struct step *steps, size_t nsteps)
{
    server_start_with(sv, steps, nsteps, false);
}

static void server_stop(struct server *sv)
{
    atomic_store(&sv->stop, true);
    pthread_join(sv->thread, NULL);
    close(sv->fd);
}

/* A port nothing listens on: bound, then released. */
static unsigned short unused_port(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&addr, &addr_len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* ---- helpers ------------------------------------------------------------- */

static char url_buf[128];

static struct http_request request_to(unsigned short port, uint64_t timeout_ms)
{
    snprintf(url_buf, sizeof(url_buf), "http://127.0.0.1:%u/v1/events", port);
    return (struct http_request){
        .url = url_buf,
        .content_type = "application/cloudevents+json",
        .body = BODY,
        .body_len = strlen(BODY),
        .bearer_token = TOKEN,
        .idempotency_key = EVENT_ID,
        .deadline_ms = http_now_ms() + timeout_ms,
    };
}

static void expect_no_token(const struct http_result *res)
{
    cr_expect_null(strcasestr(res->error, TOKEN), "error \"%s\" holds the token", res->error);
}

/* Serves steps, posts to the server, stops it; returns the time taken. */
static uint64_t run_steps(struct server *sv, const struct step *steps, size_t nsteps,
                          uint64_t timeout_ms, struct http_request *req, struct http_result *res)
{
    uint64_t start;

    server_start(sv, steps, nsteps);
    *req = request_to(sv->port, timeout_ms);
    start = http_now_ms();
    cr_assert_eq(http_post(req, res), 0);
    start = http_now_ms() - start;
    server_stop(sv);
    expect_no_token(res);
    return start;
}

#define RUN(steps, timeout_ms, req, res) \
    run_steps(&sv, steps, sizeof(steps) / sizeof(steps[0]), timeout_ms, &req, &res)

TestSuite(http, .timeout = 30);

/* ---- tests --------------------------------------------------------------- */

Test(http, delivers_with_the_headers_and_body_on_the_wire)
{
    static const struct step steps[] = { { OK_202, 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;
    const char *body;

    RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.status, 202);
    cr_expect_eq(res.attempts, 1);
    cr_expect_str_empty(res.error);
    cr_expect_eq(atomic_load(&sv.connections), 1);

    cr_expect_eq(strncmp(sv.first_request, "POST /v1/events HTTP/1.1\r\n", 26), 0, "%s", sv.first_request);
    cr_expect_not_null(strstr(sv.first_request, "\r\nAuthorization: Bearer " TOKEN "\r\n"));
    cr_expect_not_null(strstr(sv.first_request, "\r\nIdempotency-Key: \"" EVENT_ID "\"\r\n"));
    cr_expect_not_null(strstr(sv.first_request, "\r\nContent-Type: application/cloudevents+json\r\n"));
    cr_expect_not_null(strstr(sv.first_request, "\r\nUser-Agent: shmprov\r\n"));
    cr_expect_null(strcasestr(sv.first_request, "\r\nExpect:"), "no 100-continue round trip");
    body = strstr(sv.first_request, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_expect_str_eq(body + 4, BODY);
}

Test(http, no_token_no_authorization_header)
{
    static const struct step steps[] = { { OK_202, 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;

    server_start(&sv, steps, 1);
    req = request_to(sv.port, 5000);
    req.bearer_token = NULL;
    req.idempotency_key = NULL;
    req.content_type = "application/cloudevents-batch+json";
    cr_assert_eq(http_post(&req, &res), 0);
    server_stop(&sv);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_null(strcasestr(sv.first_request, "Authorization:"));
    cr_expect_null(strcasestr(sv.first_request, "Idempotency-Key:"));
    cr_expect_not_null(strstr(sv.first_request, "Content-Type: application/cloudevents-batch+json\r\n"));
}

Test(http, retries_a_500_after_a_jittered_wait)
{
    static const struct step steps[] = { { ERR_500, 0, 0 }, { OK_202, 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.attempts, 2);
    cr_expect_eq(res.status, 202);
    /* First wait: random in [0, 250 ms]. */
    cr_expect_leq(elapsed, 250 + SLACK_MS, "took %llu ms", (unsigned long long)elapsed);
}

Test(http, backoff_grows_on_503_and_408)
{
    static const struct step steps[] = {
        { ERR_503, 0, 0 },
        { "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
        { ERR_503, 0, 0 },
        { OK_202, 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 10000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.attempts, 4);
    /* Waits within [0,250] + [0,500] + [0,1000]. */
    cr_expect_leq(elapsed, 1750 + SLACK_MS, "took %llu ms", (unsigned long long)elapsed);
}

Test(http, honours_retry_after)
{
    static const struct step steps[] = {
        { "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
        { OK_202, 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.attempts, 2);
    cr_expect_geq(elapsed, 1000, "came back after %llu ms, before Retry-After", (unsigned long long)elapsed);
    cr_expect_leq(elapsed, 1000 + 250 + SLACK_MS, "took %llu ms", (unsigned long long)elapsed);
}

Test(http, retry_after_past_the_deadline_gives_up_at_once)
{
    /* Ten years: must neither overflow into a short wait nor be slept. */
    static const struct step steps[] = {
        { "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 315360000\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
        { OK_202, 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 3000, req, res);
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_eq(res.attempts, 1);
    cr_expect_eq(res.status, 503);
    cr_expect_not_null(strstr(res.error, "Retry-After"), "%s", res.error);
    cr_expect_leq(elapsed, SLACK_MS, "took %llu ms", (unsigned long long)elapsed);
}

Test(http, absurd_retry_after_is_harmless)
{
    static const struct step steps[] = {
        { "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 99999999999999999999999999\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
        { "HTTP/1.1 429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2205 07:28:00 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
        { "HTTP/1.1 429 Too Many Requests\r\nRetry-After: -5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 1500, req, res);
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_leq(elapsed, 1500 + SLACK_MS);
}

/* Loads libcurl with a first post, so that a short deadline afterwards
 * is spent on the answer rather than on loading the library. */
static void warm_up(void)
{
    static const struct step steps[] = { { OK_202, 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;

    RUN(steps, 5000, req, res);
    cr_assert_eq(res.outcome, HTTP_DELIVERED, "%s", res.error);
}

Test(http, an_invalid_status_is_retried_like_a_5xx)
{
    /* RFC 9110 §15: a status outside 100..599 is handled as a 5xx; a 1xx
     * with the connection closed after it never said anything final. Both
     * found by tests/fuzz (fuzz_http_answer), which saw them rejected. */
    static const struct step steps[] = {
        { "HTTP/1.1 600 Six\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
        { "HTTP/2 2000\r\n\r\n", 0, 0 },
        { "HTTP/1.1 100 Continue\r\n\r\n", 0, 0 },
        { "HTTP/2 -5\r\n\r\n", 0, 0 },
        { OK_202, 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;

    RUN(steps, 10000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED, "%s", res.error);
    cr_expect_eq(res.attempts, 5);
    cr_expect_eq(res.status, 202);
}

Test(http, an_invalid_status_at_the_deadline_says_so)
{
    static const struct step steps[] = {
        { "HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;

    /* Under 100 ms: no time for a second attempt. */
    warm_up();
    RUN(steps, 80, req, res);
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_eq(res.status, 999);
    cr_expect_str_eq(res.error, "gave up at the deadline after 1 attempts: server answered HTTP 999, not a valid status");
}

Test(http, a_negative_status_is_not_reported_as_no_error)
{
    /* libcurl 7.88 wraps "HTTP/2 <digits>" past INT_MAX; this said
     * "gave up ...: No error" before. */
    static const struct step steps[] = { { "HTTP/2 206666666666666666666666660\n", 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;

    warm_up();
    RUN(steps, 80, req, res);
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_lt(res.status, 0);
    cr_expect_str_eq(res.error, "gave up at the deadline after 1 attempts: server answered a status line that is not valid");
}

Test(http, other_4xx_is_rejected_without_retry)
{
    static const struct step steps[] = {
        { "HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request", 0, 0 },
        { OK_202, 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;

    RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_REJECTED);
    cr_expect_eq(res.status, 400);
    cr_expect_eq(res.attempts, 1);
    cr_expect_eq(atomic_load(&sv.connections), 1);
    cr_expect_str_eq(res.error, "server answered HTTP 400");
}

Test(http, redirect_is_rejected_and_not_followed)
{
    static const struct step elsewhere_steps[] = { { OK_202, 0, 0 } };
    struct step steps[1];
    struct server sv, elsewhere;
    struct http_request req;
    struct http_result res;
    char head[256];

    server_start(&elsewhere, elsewhere_steps, 1);
    snprintf(head, sizeof(head),
             "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%u/steal\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n", elsewhere.port);
    steps[0] = (struct step){ head, 0, 0 };
    RUN(steps, 5000, req, res);
    server_stop(&elsewhere);
    cr_expect_eq(res.outcome, HTTP_REJECTED);
    cr_expect_eq(res.status, 307);
    cr_expect_eq(res.attempts, 1);
    cr_expect_eq(atomic_load(&elsewhere.connections), 0, "the token went elsewhere");
    cr_expect_not_null(strstr(res.error, "redirect"), "%s", res.error);
}

Test(http, a_huge_body_is_cut_not_read)
{
    static const struct step steps[] = {
        { "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\nConnection: close\r\n\r\n", 0, 10485760 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 10000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED, "the status line said 200: %s", res.error);
    cr_expect_eq(res.attempts, 1);
    cr_expect_leq(elapsed, 1000, "took %llu ms", (unsigned long long)elapsed);
}

Test(http, an_endless_error_body_is_cut_and_retried)
{
    static const struct step steps[] = {
        { "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n", 0, UINT64_MAX },
        { OK_202, 0, 0 },
    };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.attempts, 2);
    cr_expect_leq(elapsed, 250 + 1000, "took %llu ms", (unsigned long long)elapsed);
}

Test(http, a_slow_answer_within_the_deadline_is_waited_for)
{
    static const struct step steps[] = { { OK_202, 800, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed;

    elapsed = RUN(steps, 3000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect_eq(res.attempts, 1);
    cr_expect_geq(elapsed, 800);
}

Test(http, a_hanging_server_ends_at_the_deadline)
{
    static const struct step steps[] = { { NULL, 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;
    uint64_t elapsed, end;

    elapsed = RUN(steps, 1500, req, res);
    end = req.deadline_ms - 1500 + elapsed;
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_eq(res.attempts, 1);
    cr_expect_eq(res.status, 0);
    cr_expect_leq(end, req.deadline_ms + SLACK_MS, "ended %lld ms after the deadline",
                  (long long)(end - req.deadline_ms));
    cr_expect_geq(end + SLACK_MS, req.deadline_ms, "ended %lld ms before the deadline",
                  (long long)(req.deadline_ms - end));
    cr_expect_not_null(strstr(res.error, "deadline"), "%s", res.error);
}

Test(http, refused_connections_are_retried_until_the_deadline)
{
    struct http_request req = request_to(unused_port(), 2000);
    struct http_result res;
    uint64_t end;

    cr_assert_eq(http_post(&req, &res), 0);
    end = http_now_ms();
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_geq(res.attempts, 2, "first wait is at most 250 ms");
    cr_expect_eq(res.status, 0);
    cr_expect_leq(end, req.deadline_ms + SLACK_MS);
    /* The last wait is cut to leave one attempt just before the deadline. */
    cr_expect_geq(end + 400, req.deadline_ms, "gave up %lld ms early",
                  (long long)(req.deadline_ms - end));
    expect_no_token(&res);
}

Test(http, a_past_deadline_sends_nothing)
{
    struct http_request req = request_to(unused_port(), 0);
    struct http_result res;

    req.deadline_ms = http_now_ms() - 1;
    cr_assert_eq(http_post(&req, &res), 0);
    cr_expect_eq(res.outcome, HTTP_RETRY_LATER);
    cr_expect_eq(res.attempts, 0);
}

Test(http, only_http_and_https)
{
    struct http_request req = request_to(unused_port(), 2000);
    struct http_result res;
    uint64_t start = http_now_ms();

    req.url = "ftp://127.0.0.1:1/x";
    cr_assert_eq(http_post(&req, &res), 0);
    cr_expect_eq(res.outcome, HTTP_FAILED, "%s", res.error);
    cr_expect_eq(res.attempts, 1);
    cr_expect_leq(http_now_ms() - start, SLACK_MS, "not retried");
}

Test(http, the_token_never_reaches_an_error_message)
{
    /* libcurl quotes the scheme it does not know (lowercased): here, the
     * token. */
    struct http_request req = request_to(unused_port(), 2000);
    struct http_result res;

    req.url = TOKEN "://127.0.0.1/";
    cr_assert_eq(http_post(&req, &res), 0);
    cr_expect_eq(res.outcome, HTTP_FAILED);
    cr_expect_str_not_empty(res.error);
    expect_no_token(&res);
}

Test(http, bad_arguments)
{
    struct http_request good = request_to(unused_port(), 1000), req;
    struct http_result res;

    cr_expect_eq(http_post(NULL, &res), -EINVAL);
    cr_expect_eq(http_post(&good, NULL), -EINVAL);
    req = good;
    req.url = NULL;
    cr_expect_eq(http_post(&req, &res), -EINVAL);
    req = good;
    req.content_type = NULL;
    cr_expect_eq(http_post(&req, &res), -EINVAL);
    req = good;
    req.body = NULL;
    cr_expect_eq(http_post(&req, &res), -EINVAL);
    req = good;
    req.bearer_token = "tok\r\nX-Evil: 1";
    cr_expect_eq(http_post(&req, &res), -EINVAL, "header injection through the token");
    req = good;
    req.bearer_token = "two words";
    cr_expect_eq(http_post(&req, &res), -EINVAL);
    req = good;
    req.bearer_token = "";
    cr_expect_eq(http_post(&req, &res), -EINVAL);
    req = good;
    req.idempotency_key = "id\n";
    cr_expect_eq(http_post(&req, &res), -EINVAL);
    req = good;
    req.content_type = "application/json\r\nX-Evil: 1";
    cr_expect_eq(http_post(&req, &res), -EINVAL);
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
    static const struct step steps[] = { { KEEP_202, 0, 0 }, { KEEP_202, 0, 0 }, { KEEP_202, 0, 0 } };
    static const char *const keys[] = { EVENT_ID, "7d2e4b6f-9e8c-4d3b-8f1a-2b3c4d5e6f70", "batch-0123abcd" };
    struct http_session *s = NULL;
    struct http_request req;
    struct server sv;

    server_start_with(&sv, steps, 3, true);
    cr_assert_eq(http_session_open(&s), 0);
    for (int i = 0; i < 3; i++) {
        req = request_to(sv.port, 5000);
        req.idempotency_key = keys[i];
        /* Nothing carries over from the request before: not the token. */
        if (i == 1)
            req.bearer_token = NULL;
        post_delivered(s, &req);
    }
    http_session_close(s);
    server_stop(&sv);
    cr_expect_eq(atomic_load(&sv.connections), 1, "one connection (one handshake) for the session");
    cr_expect_eq(atomic_load(&sv.requests), 3);
    for (int i = 0; i < 3; i++) {
        char want[128];

        snprintf(want, sizeof(want), "\r\nIdempotency-Key: \"%s\"\r\n", keys[i]);
        cr_expect_eq(sv.request_connection[i], 1);
        cr_expect_not_null(strstr(sv.request[i], want), "request %d: %s", i, sv.request[i]);
        cr_expect_eq(strstr(sv.request[i], "\r\nAuthorization: Bearer " TOKEN "\r\n") != NULL, i != 1,
                     "request %d: %s", i, sv.request[i]);
    }
}

Test(http, a_session_retries_on_its_connection)
{
    static const struct step steps[] = { { KEEP_500, 0, 0 }, { KEEP_202, 0, 0 } };
    struct http_session *s = NULL;
    struct http_request req;
    struct http_result res;
    struct server sv;

    server_start_with(&sv, steps, 2, true);
    cr_assert_eq(http_session_open(&s), 0);
    req = request_to(sv.port, 5000);
    cr_assert_eq(http_session_post(s, &req, &res), 0);
    http_session_close(s);
    server_stop(&sv);
    cr_expect_eq(res.outcome, HTTP_DELIVERED, "%s", res.error);
    cr_expect_eq(res.attempts, 2);
    cr_expect_eq(atomic_load(&sv.connections), 1);
}

/* A server that closes the connection after each answer, saying so or
 * not: the next request opens a new one, unseen by the caller. */
Test(http, a_session_reopens_a_connection_the_server_closed)
{
    static const struct step said[] = { { OK_202, 0, 0 }, { OK_202, 0, 0 } };
    static const struct step unsaid[] = { { KEEP_202, 0, 0 }, { KEEP_202, 0, 0 } };
    const struct step *scripts[] = { said, unsaid };

    for (int i = 0; i < 2; i++) {
        struct http_session *s = NULL;
        struct http_request req;
        struct server sv;

        server_start(&sv, scripts[i], 2);
        cr_assert_eq(http_session_open(&s), 0);
        req = request_to(sv.port, 5000);
        post_delivered(s, &req);
        usleep(50 * 1000);
        post_delivered(s, &req);
        http_session_close(s);
        server_stop(&sv);
        cr_expect_eq(atomic_load(&sv.connections), 2, "script %d", i);
        cr_expect_eq(atomic_load(&sv.requests), 2, "script %d", i);
    }
}

Test(http, a_session_keeps_the_policy_on_every_request)
{
    static const struct step elsewhere_steps[] = { { KEEP_202, 0, 0 } };
    struct step steps[2];
    struct server sv, elsewhere;
    struct http_session *s = NULL;
    struct http_request req;
    struct http_result res;
    char head[256];

    server_start(&elsewhere, elsewhere_steps, 1);
    snprintf(head, sizeof(head),
             "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%u/steal\r\n"
             "Content-Length: 0\r\n\r\n", elsewhere.port);
    steps[0] = (struct step){ KEEP_202, 0, 0 };
    steps[1] = (struct step){ head, 0, 0 };
    server_start_with(&sv, steps, 2, true);
    cr_assert_eq(http_session_open(&s), 0);
    req = request_to(sv.port, 5000);
    post_delivered(s, &req);
    cr_assert_eq(http_session_post(s, &req, &res), 0);
    http_session_close(s);
    server_stop(&sv);
    server_stop(&elsewhere);
    cr_expect_eq(res.outcome, HTTP_REJECTED, "the second request follows no redirect either");
    cr_expect_eq(atomic_load(&elsewhere.connections), 0, "the token went elsewhere");
    cr_expect_eq(atomic_load(&sv.connections), 1);
}

Test(http, session_bad_arguments)
{
    struct http_request req = request_to(unused_port(), 1000);
    struct http_session *s = NULL;
    struct http_result res;

    cr_expect_eq(http_session_open(NULL), -EINVAL);
    cr_expect_eq(http_session_post(NULL, &req, &res), -EINVAL);
    cr_assert_eq(http_session_open(&s), 0);
    req.bearer_token = "tok\r\nX-Evil: 1";
    cr_expect_eq(http_session_post(s, &req, &res), -EINVAL);
    http_session_close(s);
    http_session_close(NULL);
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

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t wait = 12345;
        int r = http_retry_wait(cases[i].left_ms, cases[i].jitter_ms, cases[i].retry_after_s, &wait);

        cr_expect_eq(r, cases[i].ret, "case %zu: returned %d", i, r);
        if (cases[i].ret == 0)
            cr_expect_eq(wait, cases[i].wait_ms, "case %zu: waits %llu ms", i,
                         (unsigned long long)wait);
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
    static const struct step steps[] = { { OK_202, 0, 0 } };
    struct server sv;
    struct http_request req;
    struct http_result res;

    struct http_session *s = NULL;

    cr_assert_not(libcurl_mapped(), "libcurl is linked or loaded before any report");
    (void)http_now_ms();
    cr_assert_eq(http_session_open(&s), 0);
    http_session_close(s);
    cr_assert_not(libcurl_mapped(), "opening a session loads nothing");
    RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
    cr_expect(libcurl_mapped());
}

Test(http, missing_libcurl_is_reported_as_unavailable)
{
    static const struct step steps[] = { { OK_202, 0, 0 } };
    struct server sv;
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
    RUN(steps, 5000, req, res);
    cr_expect_eq(res.outcome, HTTP_DELIVERED);
}

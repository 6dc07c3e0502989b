/* The collector's answer, end to end: the bytes are everything a server
 * sends back (status line, headers such as Retry-After, body), played by a
 * server thread on 127.0.0.1 to a real http_post(). libcurl (loaded at run
 * time, not instrumented) reads the status and the headers; the target
 * checks what shmprov makes of them: the outcome matches the status, the
 * body is cut, the error text is bounded and never holds the token.
 *
 * The deadline leaves no room for a second attempt (under 100 ms), so an
 * input costs one loopback connection and never a backoff sleep; the waits
 * themselves, Retry-After included, are fuzzed in fuzz_http_retry. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "testing.h"

#define TOKEN "tok-fuzz-3f9a7c-SECRET"
#define BODY "{\"specversion\":\"1.0\",\"id\":\"fuzz\"}"
#define DEADLINE_MS 99 /* < 100: one attempt only (see http_retry_wait) */

static int listen_fd = -1;
static char url[64];

/* The answer for the connection in progress; set before each http_post(). */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *answer;
static size_t answer_len;

static bool wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };

    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n >= 0)
            return n > 0;
        if (errno != EINTR)
            return false;
    }
}

/* The head and the Content-Length bytes of body, so that closing never
 * resets a connection with unread request bytes. */
static void read_request(int fd)
{
    char buf[8192];
    size_t len = 0, need = SIZE_MAX;

    while (len < need && len + 1 < sizeof(buf) && wait_readable(fd, 1000)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        buf[len] = '\0';
        if (need == SIZE_MAX) {
            const char *end = strstr(buf, "\r\n\r\n");
            if (end)
                need = (size_t)(end + 4 - buf) + strlen(BODY);
        }
    }
}

static void send_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* One connection: the request, the answer, then end of file, so the
 * client sees exactly the input's bytes. */
static void serve_one(int c)
{
    uint8_t *copy = NULL;
    size_t len = 0;
    char sink[4096];

    read_request(c);
    /* A copy: the input may be gone once http_post() has returned. */
    pthread_mutex_lock(&lock);
    if (answer && (copy = malloc(answer_len ? answer_len : 1)) != NULL) {
        memcpy(copy, answer, answer_len);
        len = answer_len;
    }
    pthread_mutex_unlock(&lock);
    if (copy)
        send_all(c, copy, len);
    free(copy);
    shutdown(c, SHUT_WR);
    while (wait_readable(c, 200) && read(c, sink, sizeof(sink)) > 0)
        ;
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

        if (c < 0)
            continue;
        serve_one(c);
        close(c);
    }
    return NULL;
}

static struct http_request request(uint64_t timeout_ms)
{
    return (struct http_request){
        .url = url,
        .content_type = "application/cloudevents+json",
        .body = BODY,
        .body_len = strlen(BODY),
        .bearer_token = TOKEN,
        .idempotency_key = "fuzz",
        .deadline_ms = clock_monotonic_ms() + timeout_ms,
    };
}

/* The first http_post() loads libcurl and OpenSSL, which takes longer than
 * DEADLINE_MS under ASan: do it before the first input. */
static void warm_up(void)
{
    static const uint8_t ok[] = "HTTP/1.1 204 No Content\r\n\r\n";
    struct http_request req;
    struct http_result res;

    pthread_mutex_lock(&lock);
    answer = ok;
    answer_len = sizeof(ok) - 1;
    pthread_mutex_unlock(&lock);
    req = request(10000);
    if (http_post(&req, &res) != 0 || res.outcome != HTTP_DELIVERED) {
        fprintf(stderr, "fuzz_http_answer: warm-up post: %s\n", res.error);
        abort();
    }
    pthread_mutex_lock(&lock);
    answer = NULL;
    pthread_mutex_unlock(&lock);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof(addr);
    pthread_t thread;

    (void)argc;
    (void)argv;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(listen_fd, 16) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&addr, &addr_len) < 0 ||
        pthread_create(&thread, NULL, serve, NULL) != 0) {
        perror("fuzz_http_answer: server");
        abort();
    }
    pthread_detach(thread);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/events", (unsigned)ntohs(addr.sin_port));
    warm_up();
    return 0;
}

/* http.h: 2xx delivers; 3xx and 4xx other than 408/429 are the server
 * saying no; everything else that has a status (408, 429, 5xx, a 1xx left
 * without a final status, anything outside 100..599) is retried. */
static enum http_outcome expected_for(long status)
{
    if (status >= 200 && status <= 299)
        return HTTP_DELIVERED;
    if (status >= 300 && status <= 499 && status != 408 && status != 429)
        return HTTP_REJECTED;
    return HTTP_RETRY_LATER;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_request req;
    struct http_result res;
    long status;

    pthread_mutex_lock(&lock);
    answer = data;
    answer_len = size;
    pthread_mutex_unlock(&lock);

    req = request(DEADLINE_MS);
    if (http_post(&req, &res) != 0)
        abort();
    pthread_mutex_lock(&lock);
    answer = NULL;
    pthread_mutex_unlock(&lock);
    status = res.status;
    /* For triage: FUZZ_HTTP_VERBOSE=1 fuzz_http_answer FILE... */
    if (getenv("FUZZ_HTTP_VERBOSE"))
        fprintf(stderr, "status %ld, %s, %u attempt(s): %s\n", status,
                http_outcome_name(res.outcome), res.attempts, res.error);
    if (res.outcome == HTTP_UNAVAILABLE)
        abort(); /* libcurl was there for the warm-up */

    /* Bounded, and the token never in it, whatever the server said. */
    if (strnlen(res.error, sizeof(res.error)) >= sizeof(res.error) ||
        strcasestr(res.error, TOKEN) != NULL)
        abort();
    if (res.attempts > 1)
        abort();
    if ((res.outcome == HTTP_DELIVERED) != (res.error[0] == '\0'))
        abort();

    if (status != 0 && res.outcome != expected_for(status))
        abort();
    /* No status: no answer, retried or failed, never delivered or refused. */
    if (status == 0 && res.outcome != HTTP_RETRY_LATER && res.outcome != HTTP_FAILED)
        abort();
    return 0;
}

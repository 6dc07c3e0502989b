#include "http.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "testing.h"

/* <curl/curl.h> is used for types and constants only: every libcurl
 * function is reached through the table below, filled by dlsym(). */

#define CURL_SONAME "libcurl.so.4"

#define BACKOFF_BASE_MS 250u
#define BACKOFF_CAP_MS 8000u
#define CONNECT_TIMEOUT_MS 5000u
/* A retry with less time than this left could not even connect: give up
 * instead of starting one. */
#define MIN_ATTEMPT_MS 100u
/* Bounds the Authorization header buffer; real tokens are far shorter. */
#define MAX_TOKEN_LEN 4096u

struct curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption option, ...);
    CURLcode (*easy_perform)(CURL *h);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    void (*easy_reset)(CURL *h);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
};

static const struct {
    const char *name;
    size_t offset;
} curl_symbols[] = {
    { "curl_global_init", offsetof(struct curl_api, global_init) },
    { "curl_easy_init", offsetof(struct curl_api, easy_init) },
    { "curl_easy_setopt", offsetof(struct curl_api, easy_setopt) },
    { "curl_easy_perform", offsetof(struct curl_api, easy_perform) },
    { "curl_easy_getinfo", offsetof(struct curl_api, easy_getinfo) },
    { "curl_easy_cleanup", offsetof(struct curl_api, easy_cleanup) },
    { "curl_easy_reset", offsetof(struct curl_api, easy_reset) },
    { "curl_easy_strerror", offsetof(struct curl_api, easy_strerror) },
    { "curl_slist_append", offsetof(struct curl_api, slist_append) },
    { "curl_slist_free_all", offsetof(struct curl_api, slist_free_all) },
};

/* POSIX dlsym() hands out function addresses as void *. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)), "function pointers fit in void *");

static struct curl_api curl;
static const char *library_name = CURL_SONAME;
static bool load_tried, loaded;
static char load_error[200];

void http_set_library_for_tests(const char *soname)
{
    library_name = soname ? soname : CURL_SONAME;
    load_tried = false;
    loaded = false;
}

/* Once per process, on the first report: the whole point of dlopen() is
 * that nothing else pays for libcurl. The library is never unloaded:
 * libcurl and OpenSSL do not support it once initialised. */
static bool load_libcurl(void)
{
    struct curl_api found;
    const char *why;
    void *dl;

    if (load_tried)
        return loaded;
    load_tried = true;

    dl = dlopen(library_name, RTLD_NOW | RTLD_LOCAL);
    /* The loader does not retry a read or an open a signal interrupted
     * (EINTR): one more try costs nothing when the library is missing. */
    if (!dl)
        dl = dlopen(library_name, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        why = dlerror();
        (void)snprintf(load_error, sizeof(load_error), "libcurl could not be loaded: %s",
                       why ? why : library_name);
        return false;
    }
    for (size_t i = 0; i < sizeof(curl_symbols) / sizeof(curl_symbols[0]); i++) {
        void *sym = dlsym(dl, curl_symbols[i].name);
        if (!sym) {
            (void)snprintf(load_error, sizeof(load_error), "libcurl could not be loaded: %s has no %s",
                           library_name, curl_symbols[i].name);
            dlclose(dl);
            return false;
        }
        memcpy((char *)&found + curl_symbols[i].offset, &sym, sizeof(sym));
    }
    if (found.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        (void)snprintf(load_error, sizeof(load_error), "libcurl could not be initialised");
        return false;
    }
    curl = found;
    loaded = true;
    return true;
}

const char *http_outcome_name(enum http_outcome outcome)
{
    static const char *const names[] = {
        [HTTP_DELIVERED] = "delivered", [HTTP_RETRY_LATER] = "retry later", [HTTP_REJECTED] = "rejected",
        [HTTP_FAILED] = "failed",       [HTTP_UNAVAILABLE] = "unavailable",
    };

    return (unsigned)outcome < sizeof(names) / sizeof(names[0]) ? names[outcome] : "unknown";
}

static void sleep_until(uint64_t when_ms)
{
    struct timespec ts = {
        .tv_sec = (time_t)(when_ms / 1000u),
        .tv_nsec = (long)(when_ms % 1000u) * 1000000L,
    };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* A random number in [0, n]. Hosts that failed together must not retry
 * together, so the fallback (entropy not ready early at boot) still mixes
 * in what differs between hosts and runs. */
static uint64_t random_upto(uint64_t n)
{
    uint64_t r;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = clock_realtime_ns() ^ (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    return n == UINT64_MAX ? r : r % (n + 1);
}

/* Full jitter: a wait anywhere in [0, min(cap, base * 2^(failures-1))]. */
static uint64_t backoff_ms(unsigned failures)
{
    uint64_t window = BACKOFF_CAP_MS;

    if (failures >= 1 && failures - 1 < 6)
        window = (uint64_t)BACKOFF_BASE_MS << (failures - 1);
    if (window > BACKOFF_CAP_MS)
        window = BACKOFF_CAP_MS;
    return random_upto(window);
}

int http_retry_wait(uint64_t left_ms, uint64_t jitter_ms, int64_t retry_after_s,
                    uint64_t *ret_wait_ms)
{
    uint64_t budget, wait;

    if (left_ms < MIN_ATTEMPT_MS)
        return -ETIME;
    budget = left_ms - MIN_ATTEMPT_MS;
    wait = jitter_ms;
    if (retry_after_s > 0) {
        uint64_t asked_ms;

        /* Compared in seconds first: a Retry-After of years must not
         * overflow into a short wait. */
        if ((uint64_t)retry_after_s > budget / 1000u)
            return -ERANGE;
        /* At least what the server asked, plus jitter so that hosts told
         * the same thing do not come back in the same second. asked_ms is
         * at most budget, so the sum is capped before it could wrap. */
        asked_ms = (uint64_t)retry_after_s * 1000u;
        wait = jitter_ms > budget - asked_ms ? budget : asked_ms + jitter_ms;
    }
    if (wait > budget)
        wait = budget;
    *ret_wait_ms = wait;
    return 0;
}

/* A header value must not end the header early (CR, LF) or carry bytes
 * that are not visible ASCII. */
static bool header_value_ok(const char *s, bool allow_space)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x7e || c < 0x20 || (c == ' ' && !allow_space))
            return false;
    }
    return true;
}

/* For a status > 0 that is not 2xx or 3xx: 408, 429 and 5xx; and what is
 * no answer at all. RFC 9110 §15 asks that a status outside 100..599 be
 * handled as a 5xx; a 1xx is never final: libcurl reports one when the
 * connection ended after it, before the final status. Neither says that
 * the collector refused the event. */
static bool status_retryable(long status)
{
    return status == 408 || status == 429 || status < 200 || status >= 500;
}

/* Failures that say nothing about this event or this configuration: the
 * network, the server being down or slow. TLS verification, certificate
 * files and URLs are not in the list: they fail the same way next time. */
static bool curl_error_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

/* libcurl's messages may quote parts of the URL; if the token was put
 * there too, it must still not reach a log. Case-blind: libcurl lowers
 * the case of a scheme it quotes. */
static void scrub(char *text, const char *token)
{
    size_t len = token ? strlen(token) : 0, text_len = strlen(text);

    if (len == 0)
        return;
    for (char *p = strcasestr(text, token); p; p = strcasestr(p + len, token))
        memset(p, '*', len);
    /* A message cut to fit a buffer may end in the token's first bytes. */
    for (size_t n = len - 1 < text_len ? len - 1 : text_len; n >= 4; n--) {
        if (strncasecmp(text + text_len - n, token, n) == 0) {
            memset(text + text_len - n, '*', n);
            break;
        }
    }
}

struct sink {
    uint64_t bytes;
};

/* The answer's body is not needed: count it and cut the transfer once it
 * is longer than any sensible answer, so no server can stall us with an
 * endless body or make us hold one in memory. */
static size_t discard_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct sink *sink = userdata;
    size_t n = size * nmemb;

    (void)data;
    sink->bytes += n;
    if (sink->bytes > HTTP_MAX_RESPONSE_BYTES)
        return 0; /* anything but n aborts with CURLE_WRITE_ERROR */
    return n;
}

static int append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *bigger = curl.slist_append(*list, line);

    if (!bigger)
        return -ENOMEM;
    *list = bigger;
    return 0;
}

/* libcurl copies each header line and frees the copies without clearing
 * them; the one holding the token is cleared here first. */
static void free_headers(struct curl_slist *list)
{
    for (struct curl_slist *l = list; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl.slist_free_all(list);
}

static int build_headers(const struct http_request *req, struct curl_slist **ret)
{
    struct curl_slist *list = NULL;
    char line[MAX_TOKEN_LEN + 64]; /* never cut: http_post() refuses longer tokens and keys */
    int r;

    (void)snprintf(line, sizeof(line), "Content-Type: %s", req->content_type);
    r = append_header(&list, line);
    /* No "Expect: 100-continue" round trip (a 1 s stall on servers that
     * ignore it). */
    if (r == 0)
        r = append_header(&list, "Expect:");
    /* The IETF Idempotency-Key header is a Structured Field string: in
     * double quotes (http_post() refuses keys holding '"' or '\\'). */
    if (r == 0 && req->idempotency_key) {
        (void)snprintf(line, sizeof(line), "Idempotency-Key: \"%s\"", req->idempotency_key);
        r = append_header(&list, line);
    }
    if (r == 0 && req->bearer_token) {
        (void)snprintf(line, sizeof(line), "Authorization: Bearer %s", req->bearer_token);
        r = append_header(&list, line);
    }
    explicit_bzero(line, sizeof(line));
    if (r < 0) {
        free_headers(list);
        return r;
    }
    *ret = list;
    return 0;
}

/* The fixed policy of http.h. Per-attempt timeouts are set in the loop. */
static CURLcode configure(CURL *h, const struct http_request *req, struct curl_slist *headers,
                          struct sink *sink, char *errbuf)
{
    static const struct {
        CURLoption option;
        long value;
    } fixed[] = {
        { CURLOPT_FOLLOWLOCATION, 0L },
        { CURLOPT_SSL_VERIFYPEER, 1L },
        { CURLOPT_SSL_VERIFYHOST, 2L },
        { CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2 },
        { CURLOPT_NOSIGNAL, 1L }, /* timeouts by polling, not SIGALRM: we share the process */
    };
    /* NULL: left at libcurl's default. */
    const struct {
        CURLoption option;
        const char *value;
    } texts[] = {
        { CURLOPT_URL, req->url },
        { CURLOPT_CAINFO, req->ca_file },
        { CURLOPT_SSLCERT, req->client_cert },
        { CURLOPT_SSLKEY, req->client_key },
        { CURLOPT_PROXY, "" }, /* "" turns off proxies from the environment too */
        { CURLOPT_USERAGENT, req->user_agent ? req->user_agent : "shmprov" },
    };
    CURLcode rc = curl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");

    if (rc == CURLE_UNKNOWN_OPTION) {
        /* libcurl before 7.85 only knows the bitmask form. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        rc = curl.easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#pragma GCC diagnostic pop
    }
    for (size_t i = 0; rc == CURLE_OK && i < sizeof(fixed) / sizeof(fixed[0]); i++)
        rc = curl.easy_setopt(h, fixed[i].option, fixed[i].value);
    for (size_t i = 0; rc == CURLE_OK && i < sizeof(texts) / sizeof(texts[0]); i++)
        if (texts[i].value)
            rc = curl.easy_setopt(h, texts[i].option, texts[i].value);
    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_WRITEDATA, sink);
    return rc;
}

static bool request_ok(const struct http_request *req)
{
    if (!req || !req->url || !req->content_type || (!req->body && req->body_len > 0))
        return false;
    if (!header_value_ok(req->content_type, true))
        return false;
    if (req->user_agent && !header_value_ok(req->user_agent, true))
        return false;
    if (req->idempotency_key &&
        (!header_value_ok(req->idempotency_key, false) || strlen(req->idempotency_key) > 256 ||
         strpbrk(req->idempotency_key, "\"\\")))
        return false;
    if (req->bearer_token &&
        (!header_value_ok(req->bearer_token, false) || strlen(req->bearer_token) > MAX_TOKEN_LEN ||
         req->bearer_token[0] == '\0'))
        return false;
    return true;
}

static uint64_t time_left(uint64_t deadline_ms)
{
    uint64_t now = clock_monotonic_ms();

    return deadline_ms > now ? deadline_ms - now : 0;
}

/* The result's error, for people. */
#define SAY(res, ...) (void)snprintf((res)->error, sizeof((res)->error), __VA_ARGS__)

static void give_up_at_deadline(struct http_result *res, const char *last)
{
    res->outcome = HTTP_RETRY_LATER;
    if (res->attempts == 0)
        SAY(res, "the deadline had passed before the first attempt");
    else
        SAY(res, "gave up at the deadline after %u attempts: %s", res->attempts, last);
}

/* Each attempt may use all the time left, connecting at most 5 s of it; a
 * 0 would mean "no timeout" to libcurl, left is >= 1. */
static CURLcode set_timeouts(CURL *h, uint64_t left)
{
    long attempt_ms = left > LONG_MAX ? LONG_MAX : (long)left;
    CURLcode rc = curl.easy_setopt(h, CURLOPT_TIMEOUT_MS, attempt_ms);

    if (rc == CURLE_OK)
        rc = curl.easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                              attempt_ms < (long)CONNECT_TIMEOUT_MS ? attempt_ms : (long)CONNECT_TIMEOUT_MS);
    return rc;
}

/* A status line settles the outcome even if the transfer was cut
 * afterwards (by our body limit above all): the server has said whether it
 * took the event. True when it did settle it. */
static bool status_settles(long status, struct http_result *res)
{
    if (status >= 200 && status <= 299) {
        res->outcome = HTTP_DELIVERED;
        res->error[0] = '\0';
    } else if (status >= 300 && status <= 399) {
        res->outcome = HTTP_REJECTED;
        SAY(res, "server answered HTTP %ld, a redirect, which shmprov does not follow", status);
    } else if (status > 0 && !status_retryable(status)) {
        res->outcome = HTTP_REJECTED;
        SAY(res, "server answered HTTP %ld", status);
    } else {
        return false;
    }
    return true;
}

/* What went wrong with an attempt that did not settle anything, for
 * people: the status, or libcurl's error with the token scrubbed. */
static void describe_failure(CURLcode rc, long status, int perform_errno, char *errbuf, const char *token,
                             char last[200])
{
    if (status > 0 && status < 200)
        (void)snprintf(last, 200, "server answered HTTP %ld and no final status", status);
    else if (status < 0)
        (void)snprintf(last, 200, "server answered a status line that is not valid");
    else if (status > 599)
        (void)snprintf(last, 200, "server answered HTTP %ld, not a valid status", status);
    else if (status > 0)
        (void)snprintf(last, 200, "server answered HTTP %ld", status);
    else if (rc == CURLE_BAD_FUNCTION_ARGUMENT)
        /* Every option was accepted before: during a transfer libcurl says
         * this only when its wait on the socket (poll) failed, and passes
         * on no errno of its own; the last one is the best clue there is. */
        (void)snprintf(last, 200, "libcurl's wait on the connection failed (last error: %s)",
                       perform_errno ? strerror(perform_errno) : "unknown");
    else {
        scrub(errbuf, token);
        (void)snprintf(last, 200, "%.199s", errbuf[0] ? errbuf : curl.easy_strerror(rc));
    }
}

/* Sleeps before the next attempt when one more still fits before the
 * deadline; if it cannot, says so and returns false rather than sleep into
 * it. Retry-After is read by libcurl (delay-seconds or an HTTP date, as
 * seconds from now; 0 when absent or unreadable). */
static bool wait_to_retry(CURL *h, const struct http_request *req, long status, const char *last,
                          struct http_result *res)
{
    uint64_t now = clock_monotonic_ms(), left = req->deadline_ms > now ? req->deadline_ms - now : 0, wait;
    curl_off_t retry_after = 0;
    int r;

    if (status <= 0 || curl.easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK)
        retry_after = 0;
    r = http_retry_wait(left, backoff_ms(res->attempts), (int64_t)retry_after, &wait);
    if (r == -ETIME)
        give_up_at_deadline(res, last);
    else if (r < 0)
        SAY(res, "server answered HTTP %ld with Retry-After: %lld s, past the deadline", status,
            (long long)retry_after);
    else
        sleep_until(now + wait);
    return r == 0;
}

/* The attempts themselves, on a configured handle. Fills *res; only
 * -ENOMEM is an error. */
static int send_with_retries(CURL *h, const struct http_request *req, char *errbuf,
                             struct sink *sink, struct http_result *res)
{
    char last[200] = "";

    res->outcome = HTTP_RETRY_LATER;
    for (;;) {
        uint64_t left = time_left(req->deadline_ms);
        long status = 0;
        int perform_errno;
        CURLcode rc;

        if (left == 0) {
            give_up_at_deadline(res, last);
            return 0;
        }
        rc = set_timeouts(h, left);
        if (rc != CURLE_OK) {
            res->outcome = HTTP_FAILED;
            SAY(res, "libcurl refused a timeout: %s", curl.easy_strerror(rc));
            return 0;
        }
        errbuf[0] = '\0';
        sink->bytes = 0;
        res->attempts++;
        errno = 0;
        rc = curl.easy_perform(h);
        perform_errno = errno;
        if (rc == CURLE_OUT_OF_MEMORY)
            return -ENOMEM;
        /* Not always 0 or 100..999: from an "HTTP/2 " status line libcurl
         * 7.88 takes any number of digits, a sign too, into an int that
         * wraps ("HTTP/2 -5", "HTTP/2 2000"): handled like a status
         * outside 100..599. */
        if (curl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
            status = 0;
        res->status = status;
        if (status_settles(status, res))
            return 0;
        describe_failure(rc, status, perform_errno, errbuf, req->bearer_token, last);
        if (status == 0 && !curl_error_retryable(rc) && rc != CURLE_BAD_FUNCTION_ARGUMENT) {
            res->outcome = HTTP_FAILED;
            SAY(res, "%s", last);
            return 0;
        }
        if (!wait_to_retry(h, req, status, last, res))
            return 0;
    }
}

/* One libcurl handle for the session: libcurl keeps its connections (and
 * TLS sessions) in the handle, so reusing it is what reuses them. The
 * error buffer and the sink live here because the handle points at them
 * while a request runs. */
struct http_session {
    CURL *h; /* made on the first post, once libcurl is loaded */
    struct sink sink;
    char errbuf[CURL_ERROR_SIZE];
};

int http_session_open(struct http_session **ret)
{
    struct http_session *s;

    if (!ret)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

void http_session_close(struct http_session *s)
{
    if (!s)
        return;
    /* Only a loaded libcurl made a handle. */
    if (s->h)
        curl.easy_cleanup(s->h);
    free(s);
}

/* One request on the session's handle, from a clean slate: what the last
 * request set (its token above all) must not carry over. Only -ENOMEM is
 * an error; *res is filled otherwise. */
static int session_request(struct http_session *s, const struct http_request *req, struct http_result *res)
{
    struct curl_slist *headers = NULL;
    CURLcode rc;
    int r;

    r = build_headers(req, &headers);
    if (r < 0)
        return r;
    s->errbuf[0] = '\0';
    rc = configure(s->h, req, headers, &s->sink, s->errbuf);
    if (rc == CURLE_OK) {
        r = send_with_retries(s->h, req, s->errbuf, &s->sink, res);
    } else {
        res->outcome = HTTP_FAILED;
        SAY(res, "libcurl refused an option: %s", curl.easy_strerror(rc));
    }
    /* Back to defaults (the connections stay): the handle must hold no
     * pointer to the headers freed here or to the caller's body. */
    curl.easy_reset(s->h);
    free_headers(headers);
    return r;
}

int http_session_post(struct http_session *s, const struct http_request *req, struct http_result *ret)
{
    struct http_result res = { .outcome = HTTP_RETRY_LATER };
    int r;

    if (!s || !request_ok(req) || !ret)
        return -EINVAL;

    if (!load_libcurl()) {
        res.outcome = HTTP_UNAVAILABLE;
        SAY(&res, "%s", load_error);
        *ret = res;
        return 0;
    }
    if (!s->h) {
        s->h = curl.easy_init();
        if (!s->h)
            return -ENOMEM;
    }
    r = session_request(s, req, &res);
    if (r < 0)
        return r;
    scrub(res.error, req->bearer_token);
    *ret = res;
    return 0;
}

int http_post(const struct http_request *req, struct http_result *ret)
{
    struct http_session *s = NULL;
    int r;

    if (!request_ok(req) || !ret)
        return -EINVAL;
    r = http_session_open(&s);
    if (r < 0)
        return r;
    r = http_session_post(s, req, ret);
    http_session_close(s);
    return r;
}

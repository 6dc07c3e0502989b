#pragma once
/* HTTP POSTs with bounded retries, on libcurl loaded at run time.
 *
 * libcurl and the ~30 libraries it pulls in are dlopen()ed on the first
 * post only, so commands that never report (plan, verify, validate,
 * status) do not pay for loading them and the binary does not link them.
 *
 * A session (http_session_open) carries all the POSTs of one run or one
 * flush on one libcurl handle, so they share one connection and one TLS
 * handshake; a connection the server closed meanwhile is opened again by
 * libcurl, unseen. Every request is configured afresh (nothing, the token
 * least of all, carries over from the one before).
 *
 * Fixed policy, not options: TLS peer and host verification always on;
 * http and https only; redirects never followed (a 3xx is REJECTED, so the
 * token never goes to another host); no proxy, even from the environment
 * (where the token goes is decided by the profile alone); the response body
 * is discarded and the transfer cut past HTTP_MAX_RESPONSE_BYTES.
 *
 * Not thread-safe: one thread sends. */

#include <stddef.h>
#include <stdint.h>

/* Response bytes read before a transfer is cut (the body is not kept). */
#define HTTP_MAX_RESPONSE_BYTES ((size_t)64 * 1024)

struct http_request {
    const char *url;
    /* "application/cloudevents+json" or "application/cloudevents-batch+json" */
    const char *content_type;
    const char *body;
    size_t body_len;
    /* NULL: no Authorization header. Never logged, never in errors. */
    const char *bearer_token;
    /* NULL: none. Sent as the Idempotency-Key header, a Structured Field
     * string ("...", RFC 9651): at most 256 visible ASCII characters,
     * never '"' or '\\' (http_post() refuses them). */
    const char *idempotency_key;
    /* NULL: system CA store / no client certificate. */
    const char *ca_file;
    const char *client_cert;
    const char *client_key;
    /* NULL: "shmprov". */
    const char *user_agent;
    /* Absolute CLOCK_MONOTONIC milliseconds (clock_monotonic_ms() + timeout): no
     * attempt and no wait between attempts goes past it. */
    uint64_t deadline_ms;
};

enum http_outcome {
    HTTP_DELIVERED,   /* 2xx */
    HTTP_RETRY_LATER, /* retryable failures until the deadline, or a
                         Retry-After that does not fit before it */
    HTTP_REJECTED,    /* the server said no: 3xx, or 4xx other than 408/429 */
    HTTP_FAILED,      /* no HTTP answer and retrying in this run won't help:
                         TLS verification, certificate files, bad URL */
    HTTP_UNAVAILABLE, /* libcurl could not be loaded */
};

struct http_result {
    enum http_outcome outcome;
    long status;       /* last HTTP status as libcurl read it, 0 if none; a broken
                          server can make it anything, negative included */
    unsigned attempts; /* requests started; 0 when none could be */
    char error[256];   /* for people, "" when delivered; never holds the token */
};

struct http_session;

/* A session for the requests of one run or one flush. Loads nothing:
 * libcurl is loaded on its first post. Returns 0, or -ENOMEM. */
int http_session_open(struct http_session **ret);

/* Closes the session's connection. NULL is a no-op. */
void http_session_close(struct http_session *s);

/* Posts req->body to req->url on s's connection (opened when there is
 * none, or none that is still alive), retrying with exponential backoff
 * and full jitter (a random wait in [0, min(8 s, 250 ms * 2^n)]) on
 * connection errors, timeouts, 408, 429 and 5xx (and, as RFC 9110 asks, a
 * status outside 100..599, or a 1xx with no final status after it),
 * waiting at least as long as a Retry-After asks. Returns 0 with *ret
 * filled whatever the outcome; a negative errno only for bad arguments
 * (-EINVAL: NULL session or fields, a token or key with characters a
 * header can't carry) or -ENOMEM. */
int http_session_post(struct http_session *s, const struct http_request *req, struct http_result *ret);

/* Human text for an outcome ("delivered", "retry later", ...). */
const char *http_outcome_name(enum http_outcome outcome);

#pragma once
/* What only the unit tests and the fuzz targets call: the pure parsers and
 * decisions inside the modules, and what a test must swap. Each defining
 * module includes this header, so its definitions are checked against it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "probe.h"
#include "profile.h"
#include "removal.h"
#include "sizing.h"
#include "sysctld.h"

/* ---- host ---- */

/* "MemTotal:  24567892 kB" -> bytes (never 0). Returns 0 or -EINVAL. */
int host_parse_meminfo(const char *text, uint64_t *ret_bytes);

/* Sums /proc/sysvipc/shm. Returns 0 or -EINVAL for a malformed table. */
int host_parse_sysvipc_shm(const char *text, uint64_t page_size, struct sizing_usage *ret);

/* ---- http ---- */

/* http_session_post() on a session of its own, closed before it returns. */
int http_post(const struct http_request *req, struct http_result *ret);

/* The wait in ms before the next attempt, left_ms before the deadline:
 * jitter_ms (the backoff draw) plus retry_after_s (CURLINFO_RETRY_AFTER;
 * <= 0: none), leaving 100 ms for the attempt. Returns 0, -ETIME when no
 * attempt fits any more, or -ERANGE when Retry-After asks past it. */
int http_retry_wait(uint64_t left_ms, uint64_t jitter_ms, int64_t retry_after_s,
                    uint64_t *ret_wait_ms);

/* Loads soname instead of "libcurl.so.4" on the next post (NULL: the
 * default), so a missing libcurl can be tested; one already loaded stays. */
void http_set_library_for_tests(const char *soname);

/* ---- identity ---- */

/* Parses os-release text as the shell would (quotes, backslash escapes,
 * concatenated parts, comments; the last assignment of a key wins) into id
 * and version_id (each "" when absent, empty, too long or holding control
 * characters). Returns how many of the two were found (0..2). */
int identity_parse_os_release(const char *text, char *id, size_t id_len, char *version_id,
                              size_t version_id_len);

/* The value of the last valid assignment of key in os-release text.
 * Returns 0, -ENOENT (no such assignment), -E2BIG (longer than len - 1) or
 * -EINVAL (empty, or holds a control character). */
int identity_os_release_value(const char *text, const char *key, char *buf, size_t len);

/* Whether name is usable as this host's FQDN: it has a dot and is not one
 * of the names every machine has (localhost, localhost.localdomain,
 * *.localdomain, *.localhost), and holds only printable ASCII. */
bool identity_fqdn_plausible(const char *name);

/* ---- jsonout ---- */

/* The escaped form of s[0..len) as a malloc'd NUL-terminated string, or
 * NULL without memory. */
char *jsonout_escape(const char *s, size_t len);

/* ---- probe ---- */

/* Whether a request of shmmax + 1 bytes can test shmmax: not from
 * min(SIZE_MAX, INT64_MAX) on, since the kernel refuses a segment above
 * MAX_LFS_FILESIZE with the same EINVAL the shmmax check gives. The kernel
 * default (ULONG_MAX - 2^24) is above it. */
bool probe_shmmax_testable(uint64_t shmmax);

/* Largest segment that could be created now: 0 when every id is taken
 * (segments >= shmmni) or shm_tot_pages >= shmall, else
 * min(shmmax, (shmall - shm_tot_pages) * page_size), saturating. Pure. */
uint64_t probe_headroom(const struct probe_limits *limits, uint64_t shm_tot_pages,
                        uint64_t segments);

/* ---- profile ---- */

/* Parses buf (len bytes) named file. Returns 0 and sets *ret, or -EINVAL with
 * every problem in diags (which must be initialised), or -ENOMEM. */
int profile_parse(const char *buf, size_t len, const char *file, struct profile_diags *diags,
                  struct profile **ret);

/* Whether the profile marks segments with this key as persistent. */
bool profile_key_is_persistent(const struct profile *p, uint32_t key);

/* ---- removal ---- */

/* Whose the drop-in bytes (NULL: absent) are: against recorded_sha256
 * (NULL or "": no apply recorded this path), else against shmprov's
 * header and rendered, the profile's text now. */
enum removal_owner removal_judge_owner(const char *bytes, size_t len, const char *recorded_sha256,
                                       const char *rendered, size_t rendered_len);

/* Which keys a drop-in's text sets (an exclusion, "-key" alone, sets
 * nothing), as systemd-sysctl reads it. */
void removal_keys_set_by(const char *text, size_t len, bool ret[SIZING_KEY_COUNT]);

/* The boot value of key id once the drop-in is gone: the winning line w's
 * (none: the kernel's default), unknown when uncertain (not every file was
 * read) or unreadable as plain decimal: then boot_known false, problem says. */
void removal_boot_value(enum sizing_key_id id, const struct sysctld_assignment *w, bool uncertain,
                        struct removal_key *ret);

/* ---- sysctld ---- */

/* sysctld_analyse_both() for one rule set. */
int sysctld_analyse_pending(const char *root, enum sysctld_rules rules, const char *const *keys,
                            size_t nkeys, const char *pending_path, const char *pending_text,
                            size_t pending_len, struct sysctld_analysis **ret);

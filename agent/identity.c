#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "hash.h"
#include "testing.h"

/* Part of the hashed input since v1: changing it would give every host a
 * new source, so it stays as it is even though reports are v2 now. */
#define SOURCE_SALT "shmprov report source v1\n"

/* ---- the source --------------------------------------------------------- */

/* 32 lowercase hex digits, then a newline or the end: what systemd writes
 * to /etc/machine-id and what identity_source() writes to host-id. All
 * zeros is the null id some images ship, shared by every clone. */
static bool id_usable(const char *s, size_t len)
{
    if (len < 32 || strspn(s, "0123456789abcdef") < 32 || strspn(s, "0") >= 32)
        return false;
    return len == 32 || (len == 33 && s[32] == '\n');
}

static int read_id_file(const char *path, bool nofollow, char id[33])
{
    char *buf = NULL;
    size_t len;
    int r = fsutil_read_file(path, 256, nofollow, &buf, &len, NULL);

    if (r < 0)
        return r;
    r = id_usable(buf, len) ? 0 : -EINVAL;
    if (r == 0)
        memcpy(id, buf, 32), id[32] = '\0';
    free(buf);
    return r;
}

/* Never fails: without getrandom() (a seccomp filter, an old kernel) the
 * id is a hash of the clocks (to the nanosecond, and the uptime), the pid
 * and a stack address (ASLR): weaker, but still different on two hosts in
 * practice, which a fixed fallback would not be. getrandom() may block at
 * early boot until the kernel has entropy, as report ids already do: an id
 * kept for the host's lifetime is worth that wait. */
static void random_id(char id[33])
{
    unsigned char b[16];
    char seed[160], hex[65];
    struct timespec rt = { 0, 0 }, mono = { 0, 0 };

    if (TEMP_FAILURE_RETRY(getrandom(b, sizeof(b), 0)) == (ssize_t)sizeof(b)) {
        for (size_t i = 0; i < sizeof(b); i++)
            (void)snprintf(id + 2 * i, 3, "%02x", b[i]);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    (void)snprintf(seed, sizeof(seed), "%lld.%ld %lld.%ld %ld %p", (long long)rt.tv_sec, rt.tv_nsec,
                   (long long)mono.tv_sec, mono.tv_nsec, (long)getpid(), (void *)&rt);
    hash_sha256_hex(seed, strlen(seed), hex);
    memcpy(id, hex, 32);
    id[32] = '\0';
}

static void source_of(const char id[33], char buf[IDENTITY_SOURCE_LEN + 1])
{
    char salted[sizeof(SOURCE_SALT) + 32], hex[65];

    /* One-way and specific to shmprov: the machine id, which other
     * software treats as a confidential stable identifier, never leaves. */
    (void)snprintf(salted, sizeof(salted), SOURCE_SALT "%.32s", id);
    hash_sha256_hex(salted, strlen(salted), hex);
    (void)snprintf(buf, IDENTITY_SOURCE_LEN + 1, IDENTITY_SOURCE_PREFIX "%.32s", hex);
}

/* Create-once: the new id is written whole to a staging file, then link()ed
 * to host-id, which fails when host-id exists. A plain rename would replace
 * an id another run created a moment before, and that run's reports would
 * carry an id no later run has. */
static int host_id_create(const char *state_dir, const char *path, char id[33])
{
    CLEANUP_FREE char *staging = NULL;
    char content[34], nonce[33];
    int dirfd, r;

    r = fsutil_mkdir_parents(path);
    if (r < 0)
        return r;
    dirfd = TEMP_FAILURE_RETRY(open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    /* A crash between writing the staging file and linking it leaves the
     * staging file (and inside fsutil_write_atomic, its own temporary); only
     * those older than a minute go, never a concurrent creator's. */
    if (dirfd >= 0) {
        (void)fsutil_remove_stale_temps_at(dirfd, IDENTITY_HOST_ID_NAME, 60);
        (void)fsutil_remove_stale_temps_at(dirfd, FSUTIL_TEMP_PREFIX IDENTITY_HOST_ID_NAME, 60);
    }
    random_id(id);
    random_id(nonce);
    if (asprintf(&staging, "%s/" FSUTIL_TEMP_PREFIX IDENTITY_HOST_ID_NAME ".%.16s", state_dir, nonce) < 0) {
        r = -ENOMEM;
        goto out;
    }
    (void)snprintf(content, sizeof(content), "%s\n", id);
    r = fsutil_write_atomic(staging, content, 33, 0644);
    if (r < 0)
        goto out;
    if (link(staging, path) == 0) {
        if (dirfd >= 0) /* visible now: this run and the next use it either way */
            (void)TEMP_FAILURE_RETRY(fsync(dirfd));
    } else if (errno == EEXIST) {
        r = read_id_file(path, true, id); /* another run was first: its id is the host's */
    } else {
        r = -errno;
    }
    (void)unlink(staging);
out:
    if (dirfd >= 0)
        close(dirfd);
    return r;
}

static int host_id_get(const char *state_dir, char id[33])
{
    CLEANUP_FREE char *path = NULL;
    int r;

    if (!state_dir || !state_dir[0])
        return -EINVAL;
    if (asprintf(&path, "%s/" IDENTITY_HOST_ID_NAME, state_dir) < 0)
        return -ENOMEM;
    /* An unusable host-id is left alone (-EINVAL): it is not ours to
     * guess at, and replacing it would silently change the host's source.
     * Deleting it makes a new one. */
    r = read_id_file(path, true, id);
    if (r != -ENOENT)
        return r;
    return host_id_create(state_dir, path, id);
}

int identity_source(const char *machine_id_path, const char *state_dir, char buf[IDENTITY_SOURCE_LEN + 1])
{
    char id[33];
    int r;

    if (machine_id_path && read_id_file(machine_id_path, false, id) == 0) {
        source_of(id, buf);
        return IDENTITY_FROM_MACHINE_ID;
    }
    r = host_id_get(state_dir, id);
    if (r == 0) {
        source_of(id, buf);
        return IDENTITY_FROM_HOST_ID;
    }
    random_id(id);
    source_of(id, buf);
    return r;
}

/* ---- os-release ----------------------------------------------------------
 * A shell fragment (os-release(5)); parsed, never run. */

struct osr_value {
    size_t len;   /* whole value, even past the buffer */
    bool control; /* holds a control character (a newline in quotes, say) */
};

static void osr_put(char *out, size_t cap, struct osr_value *v, char c)
{
    if (out && v->len + 1 < cap)
        out[v->len] = c;
    v->len++;
    v->control = v->control || (unsigned char)c < 0x20 || c == 0x7f;
}

/* Inside "...": a backslash escapes only $ ` " \ and a newline (which it
 * removes); before anything else it is itself. Returns false when the
 * quote is not closed. */
static bool osr_double(const char **pp, char *out, size_t cap, struct osr_value *v)
{
    const char *p = *pp;

    for (; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1] && strchr("$`\"\\\n", p[1])) {
            if (*++p != '\n')
                osr_put(out, cap, v, *p);
            continue;
        }
        osr_put(out, cap, v, *p);
    }
    *pp = p;
    return *p == '"';
}

/* One shell word from *pp: unquoted, '...' and "..." parts run together,
 * ending at unquoted white space or the end of the line. Returns false on
 * an unclosed quote. out may be NULL (the value is only skipped). */
static bool osr_word(const char **pp, char *out, size_t cap, struct osr_value *v)
{
    const char *p = *pp;

    memset(v, 0, sizeof(*v));
    for (; *p && !strchr(" \t\n", *p); p++) {
        if (*p == '\'') {
            const char *end = strchr(p + 1, '\'');
            if (!end)
                return false;
            while (++p < end)
                osr_put(out, cap, v, *p);
        } else if (*p == '"') {
            p++;
            if (!osr_double(&p, out, cap, v))
                return false;
        } else if (*p == '\\') {
            if (p[1] == '\0')
                break;
            if (*++p != '\n') /* a backslash-newline joins lines */
                osr_put(out, cap, v, *p);
        } else {
            osr_put(out, cap, v, *p);
        }
    }
    if (out && cap > 0)
        out[v->len < cap ? v->len : cap - 1] = '\0';
    *pp = p;
    return true;
}

static const char *osr_next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

/* Length of "NAME=" at p (a shell variable name and '='), or 0. */
static size_t osr_assignment(const char *p)
{
    size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");

    if (n == 0 || (*p >= '0' && *p <= '9') || p[n] != '=')
        return 0;
    return n + 1;
}

/* Where the value of the last well-formed assignment of key starts, or
 * NULL. A line with anything but a comment after its value is not one. */
static const char *osr_find(const char *text, const char *key)
{
    const char *p = text, *found = NULL;
    size_t key_len = strlen(key);

    while (*p) {
        const char *value;
        struct osr_value v;
        size_t n;

        p += strspn(p, " \t");
        n = osr_assignment(p);
        if (n == 0) { /* blank, comment or not an assignment */
            p = osr_next_line(p);
            continue;
        }
        value = p + n;
        p = value;
        if (!osr_word(&p, NULL, 0, &v))
            break; /* an unclosed quote: the rest of the file is inside it */
        p += strspn(p, " \t");
        if ((*p == '\0' || *p == '\n' || *p == '#') && n - 1 == key_len && strncmp(value - n, key, key_len) == 0)
            found = value;
        p = osr_next_line(p);
    }
    return found;
}

int identity_os_release_value(const char *text, const char *key, char *buf, size_t len)
{
    const char *p = osr_find(text, key);
    struct osr_value v;

    if (len > 0)
        buf[0] = '\0';
    if (!p)
        return -ENOENT;
    (void)osr_word(&p, buf, len, &v);
    if (v.len >= len || v.len == 0 || v.control) {
        if (len > 0)
            buf[0] = '\0';
        return v.len >= len && v.len > 0 ? -E2BIG : -EINVAL;
    }
    return 0;
}

int identity_parse_os_release(const char *text, char *id, size_t id_len, char *version_id,
                              size_t version_id_len)
{
    int found = 0;

    found += identity_os_release_value(text, "ID", id, id_len) == 0;
    found += identity_os_release_value(text, "VERSION_ID", version_id, version_id_len) == 0;
    return found;
}

/* /etc/os-release, or /usr/lib/os-release when it cannot be read (the
 * order os-release(5) prescribes); an ID missing from the file read is
 * unknown, not the "linux" the manual allows, so that hosts with a broken
 * os-release stay findable. */
static void read_os_release(struct host_identity *ret)
{
    const char *test = secure_getenv("SHMPROV_TEST_OS_RELEASE");
    const char *const paths[] = { test && test[0] ? test : "/etc/os-release", "/usr/lib/os-release" };
    size_t npaths = test && test[0] ? 1 : 2;

    for (size_t i = 0; i < npaths; i++) {
        char *buf = NULL;
        size_t len;

        if (fsutil_read_file(paths[i], IDENTITY_OS_RELEASE_MAX, false, &buf, &len, NULL) < 0)
            continue;
        (void)identity_parse_os_release(buf, ret->os_id, sizeof(ret->os_id), ret->os_version_id,
                                        sizeof(ret->os_version_id));
        free(buf);
        return;
    }
}

/* ---- FQDN ---------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool identity_fqdn_plausible(const char *name)
{
    const char *dot = strchr(name, '.');

    if (!dot || dot == name || ends_with(name, "."))
        return false;
    for (const char *s = name; *s; s++)
        if (*s <= ' ' || *s >= 0x7f)
            return false;
    /* Every machine has these: they say nothing about which one this is. */
    return strncmp(name, "localhost.", 10) != 0 && !ends_with(name, ".localdomain") &&
           !ends_with(name, ".localhost");
}

/* Copies name without one trailing dot (the DNS root) if it is plausible. */
static bool take_fqdn(struct host_identity *ret, const char *name)
{
    size_t n = strlen(name);

    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n >= sizeof(ret->fqdn))
        return false;
    memcpy(ret->fqdn, name, n);
    ret->fqdn[n] = '\0';
    ret->fqdn_known = identity_fqdn_plausible(ret->fqdn);
    if (!ret->fqdn_known)
        ret->fqdn[0] = '\0';
    return ret->fqdn_known;
}

static void read_fqdn(struct host_identity *ret, const char *nodename, bool resolve)
{
    struct addrinfo hints = { .ai_flags = AI_CANONNAME, .ai_socktype = SOCK_STREAM }, *res = NULL;

    if (take_fqdn(ret, nodename) || !resolve || !nodename[0])
        return;
    if (getaddrinfo(nodename, NULL, &hints, &res) != 0)
        return;
    if (res && res->ai_canonname)
        (void)take_fqdn(ret, res->ai_canonname);
    freeaddrinfo(res);
}

int identity_read(struct host_identity *ret, bool resolve_fqdn)
{
    struct utsname uts;

    memset(ret, 0, sizeof(*ret));
    if (uname(&uts) == 0) {
        size_t n = strnlen(uts.machine, sizeof(uts.machine));
        if (n < sizeof(ret->arch))
            memcpy(ret->arch, uts.machine, n + 1);
        read_fqdn(ret, uts.nodename, resolve_fqdn);
    }
    read_os_release(ret);
    return 0;
}

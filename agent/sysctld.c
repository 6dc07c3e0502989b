#include "sysctld.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "testing.h"

/* Which file wins is modelled exactly, since a nearly right model would
 * say shmprov's drop-in wins when it does not; where the tools only read
 * odd bytes differently, the lines are "uncertain" instead (is_odd). The
 * comments say where the two tools differ. */

/* procps' list; systemd's lacks the last, /lib/sysctl.d: Debian builds
 * systemd 252 without split-usr. */
const char *const sysctld_dirs[] = {
    "/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
    "/lib/sysctl.d", NULL,
};

/* procps reads this after every drop-in, so it can beat a later-named one. */
#define PROCPS_LAST_FILE "/etc/sysctl.conf"

/* systemd-sysctl.service has LoadCredential=sysctl.extra, applied after all
 * files. PID 1 keeps system credentials here. */
#define SYSTEMD_CREDENTIAL "/run/credentials/@system/sysctl.extra"

const char *sysctld_rules_name(enum sysctld_rules rules)
{
    return rules == SYSCTLD_PROCPS ? "sysctl --system" : "systemd-sysctl";
}

/* ---- keys ---------------------------------------------------------------
 * "kernel.shmmax" and "kernel/shmmax" are one key; both tools turn names into
 * the slash form (the path under /proc/sys), so names are compared in it. */

static int canonical_key(const char *key, char ret[SYSCTLD_KEY_MAX])
{
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    size_t n = strlen(key);

    /* Names joined by single separators, nothing else. */
    if (n == 0 || n >= SYSCTLD_KEY_MAX || !strchr(name_chars, key[0]) || !strchr(name_chars, key[n - 1]))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        ret[i] = (char)(key[i] == '.' ? '/' : key[i]);
        if (!strchr(name_chars, key[i]) && (i == 0 || ret[i] != '/' || ret[i - 1] == '/'))
            return -EINVAL;
    }
    ret[n] = '\0';
    return 0;
}

/* ---- lines -------------------------------------------------------------- */

struct span {
    const char *p;
    size_t n;
};

/* Both tools end a line at '\n' or "\r\n", but read a NUL, a lone '\r',
 * '\v' and '\f' differently. Not emulated: such a byte splits its line into
 * pieces, and what they and every later line set is uncertain (systemd
 * numbers those lines differently too). */
static bool is_odd(char c)
{
    return c == '\0' || c == '\r' || c == '\v' || c == '\f';
}

static size_t next_line(const char *t, size_t len, size_t pos, struct span *ret)
{
    const char *nl = memchr(t + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - t) : len;

    *ret = (struct span){ t + pos, end - pos };
    if (ret->n > 0 && ret->p[ret->n - 1] == '\r')
        ret->n--;
    return nl ? end + 1 : end;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Drops trailing spaces, and leading ones too when left. */
static struct span strip(struct span s, bool left)
{
    while (left && s.n > 0 && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_space(s.p[s.n - 1]))
        s.n--;
    return s;
}

struct split {
    struct span key, value; /* value.p NULL: "-key" alone, an exclusion */
    bool ignore_failure;
};

/* Returns 1 for an assignment or exclusion, 0 for a line to skip, and -1 for
 * a line the tool warns about. */
static int split_line(enum sysctld_rules rules, struct span line, struct split *ret)
{
    struct span s = strip(line, true);
    const char *eq;

    /* (procps skips a one-character last line without a newline, where
     * systemd warns: it cannot name a key either way.) */
    if (s.n == 0 || s.p[0] == '#' || s.p[0] == ';')
        return 0;
    *ret = (struct split){ 0 };
    eq = memchr(s.p, '=', s.n);
    if (!eq) {
        /* "-key" without '=' is an exclusion: it keeps globs off the key. */
        if (s.p[0] != '-')
            return -1;
        ret->key = (struct span){ s.p + 1, s.n - 1 };
    } else {
        ret->key = (struct span){ s.p, (size_t)(eq - s.p) };
        ret->value = strip((struct span){ eq + 1, s.n - (size_t)(eq - s.p) - 1 }, true);
        if (s.p[0] == '-') {
            ret->ignore_failure = true;
            ret->key.p++;
            ret->key.n--;
        }
    }
    /* systemd strips the key again after the '-'; procps only strips its
     * end, so "- kernel.shmmax = 1" names " kernel/shmmax" there and sets
     * nothing. */
    ret->key = strip(ret->key, rules == SYSCTLD_SYSTEMD);
    return 1;
}

/* ---- names --------------------------------------------------------------
 * Both tools swap '.' and '/' when the first separator is a '.', so
 * "net.ipv4.conf.eth0/100.rp_filter" keeps its VLAN dot. */

static void swap_separators(char *s)
{
    char *n = strpbrk(s, "/.");

    if (!n || *n == '/')
        return;
    for (; n; n = strpbrk(n + 1, "/."))
        *n = *n == '.' ? '/' : '.';
}

/* Drops the empty and "." components of a path. In a key name (systemd's
 * path_simplify(), no leading '/') ".." stays; in an absolute path, ".."
 * drops the component before it. Returns whether there was a "..". */
static bool clean_path(char *s, bool absolute)
{
    char *w = s;
    const char *r = s;
    bool dotdot = false;

    while (*r) {
        const char *e;
        size_t n;
        bool up;

        while (*r == '/')
            r++;
        e = strchrnul(r, '/');
        n = (size_t)(e - r);
        up = n == 2 && r[0] == '.' && r[1] == '.';
        dotdot = dotdot || up;
        if (absolute && up) {
            while (w > s && *--w != '/')
                ;
        } else if (n > 0 && !(n == 1 && r[0] == '.')) {
            if (absolute || w != s)
                *w++ = '/';
            memmove(w, r, n);
            w += n;
        }
        r = e;
    }
    if (w == s)
        *w++ = absolute ? '/' : '.';
    *w = '\0';
    return dotdot;
}

/* procps opens "/proc/sys/" + name as written, which the kernel resolves
 * as systemd simplifies it, except that a trailing "/" or "/." fails with
 * ENOTDIR. */
static bool procps_can_open(const char *name)
{
    size_t n = strlen(name);

    return !(n > 0 && name[n - 1] == '/') && !(n >= 2 && name[n - 2] == '/' && name[n - 1] == '.');
}

/* One text being parsed, and where in it. */
struct parser {
    enum sysctld_rules rules;
    char canon[SYSCTLD_MAX_KEYS][SYSCTLD_KEY_MAX];
    const char *const *keys;
    size_t nkeys;
    sysctld_line_fn on_line;
    sysctld_warning_fn on_warning;
    void *ctx;
    unsigned lineno;
    bool uncertain; /* an odd byte was seen (is_odd) */
};

static void warnf(const struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(const struct parser *ps, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    if (!ps->on_warning)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    ps->on_warning(ps->ctx, ps->lineno, why);
}

/* Returns 0 or -ENOMEM. */
static int parse_line(const struct parser *ps, struct span line)
{
    CLEANUP_FREE char *raw = NULL, *simple = NULL;
    const char *name; /* as the tool keeps it */
    struct split sp;
    bool glob, empty_warned = false;
    int r = split_line(ps->rules, line, &sp);

    if (r < 0)
        warnf(ps, "not an assignment (no '='), ignored");
    /* An empty key names nothing; the kernel refuses paths this long, so
     * such a key cannot set ours either. */
    if (r <= 0 || sp.key.n == 0 || sp.key.n >= PATH_MAX)
        return 0;
    if (!(raw = strndup(sp.key.p, sp.key.n)))
        return -ENOMEM;
    swap_separators(raw);
    if (!(simple = strdup(raw)))
        return -ENOMEM;
    name = ps->rules == SYSCTLD_SYSTEMD ? simple : raw;
    if (clean_path(simple, false)) {
        /* The kernel would resolve it, the model does not; nobody writes it. */
        warnf(ps, "key '%s' has a '..' component, not analysed", name);
        return 0;
    }
    if (ps->rules == SYSCTLD_PROCPS && !procps_can_open(raw))
        return 0;
    glob = strpbrk(name, "*?[") != NULL;

    for (size_t i = 0; i < ps->nkeys; i++) {
        struct sysctld_line l;

        /* Both tools expand globs with glob(3) under /proc/sys. */
        if (glob ? fnmatch(simple, ps->canon[i], FNM_PATHNAME | FNM_PERIOD) != 0 : strcmp(simple, ps->canon[i]) != 0)
            continue;
        if (sp.value.p && sp.value.n == 0 && !empty_warned) {
            warnf(ps, "empty value for %s, which the kernel refuses", ps->keys[i]);
            empty_warned = true;
        }
        l = (struct sysctld_line){
            .key_index = i,
            .line = ps->lineno,
            .name = name,
            .value = sp.value.p,
            .value_len = sp.value.n,
            .glob = glob,
            .exact = strcmp(name, ps->canon[i]) == 0,
            .ignore_failure = sp.ignore_failure,
            .uncertain = ps->uncertain,
        };
        ps->on_line(ps->ctx, &l);
    }
    return 0;
}

int sysctld_parse_text(enum sysctld_rules rules, const char *text, size_t len,
                       const char *const *keys, size_t nkeys, sysctld_line_fn on_line,
                       sysctld_warning_fn on_warning, void *ctx)
{
    struct parser ps = { rules, { { 0 } }, keys, nkeys, on_line, on_warning, ctx, 0, false };
    size_t pos = 0;

    if ((rules != SYSCTLD_SYSTEMD && rules != SYSCTLD_PROCPS) || (!text && len > 0) || !keys ||
        nkeys == 0 || nkeys > SYSCTLD_MAX_KEYS || !on_line)
        return -EINVAL;
    for (size_t i = 0; i < nkeys; i++)
        if (!keys[i] || canonical_key(keys[i], ps.canon[i]) < 0)
            return -EINVAL;

    while (pos < len) {
        struct span line;

        pos = next_line(text, len, pos, &line);
        ps.lineno++;
        for (size_t i = 0; i < line.n && !ps.uncertain; i++)
            ps.uncertain = is_odd(line.p[i]);
        /* The pieces between odd bytes; the whole line when there are none. */
        for (size_t i = 0, start = 0; i <= line.n; i++) {
            if (i < line.n && !is_odd(line.p[i]))
                continue;
            if (parse_line(&ps, (struct span){ line.p + start, i - start }) < 0)
                return -ENOMEM;
            start = i + 1;
        }
    }
    return 0;
}

/* Grows *items (of size each) to hold one more; false on ENOMEM. */
static bool grow(void **items, size_t *cap, size_t n, size_t size)
{
    size_t ncap = *cap ? *cap * 2 : 8;
    void *bigger;

    if (n < *cap)
        return true;
    bigger = realloc(*items, ncap * size);
    if (!bigger)
        return false;
    *items = bigger;
    *cap = ncap;
    return true;
}

/* ---- the disk, looked at once -------------------------------------------
 * Both tools read mostly the same directories and files: every resolution,
 * listing and read goes through a memo, so the second analysis of a tree
 * answers from memory. Paths in the memo are inside root. */
enum look { LOOK_RESOLVE, LOOK_LIST, LOOK_READ };

struct looked {
    enum look kind;
    char *path;     /* inside root */
    int r;          /* 0 or a negative errno; LIST: why the listing stopped */
    bool opened;    /* LIST: the directory could be opened (its entries maybe not all read: see r) */
    mode_t mode;    /* RESOLVE: all the analysis needs of struct stat */
    dev_t rdev;
    char *data;     /* RESOLVE: where path leads, missing too; LIST: the names, each NUL-terminated; READ: the bytes */
    size_t len;
};

struct memo {
    int rootfd;
    char *prefix; /* the root's real path on the host, "" for "/" */
    struct looked *items;
    size_t n, cap;
};

static int memo_open(struct memo *m, const char *root)
{
    *m = (struct memo){ .rootfd = -1 };
    if (!root || root[0] != '/')
        return -EINVAL;
    m->rootfd = TEMP_FAILURE_RETRY(open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (m->rootfd < 0)
        return -errno;
    m->prefix = realpath(root, NULL);
    if (!m->prefix)
        return -errno;
    if (strcmp(m->prefix, "/") == 0)
        m->prefix[0] = '\0';
    return 0;
}

static void memo_free(struct memo *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].path);
        free(m->items[i].data);
    }
    free(m->items);
    free(m->prefix);
    if (m->rootfd >= 0)
        close(m->rootfd);
}

/* dir + "/" + name, allocated; NULL on ENOMEM. */
static char *join(const char *dir, const char *name)
{
    char *s;

    return asprintf(&s, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) < 0 ? NULL : s;
}

/* The path inside root of what fd is open on, allocated in *ret. */
static int path_inside_root(const struct memo *m, int fd, char **ret)
{
    char proc[64], host[PATH_MAX];
    size_t n = strlen(m->prefix);
    ssize_t len;

    (void)snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    len = readlink(proc, host, sizeof(host) - 1);
    if (len < 0)
        return -errno;
    host[len] = '\0';
    if (strncmp(host, m->prefix, n) != 0 || (host[n] != '/' && host[n] != '\0'))
        return -EXDEV;
    *ret = strdup(host[n] ? host + n : "/");
    return *ret ? 0 : -ENOMEM;
}

/* An O_PATH descriptor for path (absolute, on the target system) as if
 * chroot()ed into root: links followed, absolute targets and ".." kept
 * inside it, so the host's own files are never looked at. */
static int open_in_root(const struct memo *m, const char *path)
{
    struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
    char *real = NULL;
    bool inside;
    struct stat st;
    int fd = (int)TEMP_FAILURE_RETRY(syscall(SYS_openat2, m->rootfd, path, &how, sizeof(how)));

    if (fd >= 0 || errno != ENOSYS)
        return fd;
    if (!m->prefix[0])
        return TEMP_FAILURE_RETRY(open(path, O_PATH | O_CLOEXEC)); /* the live system: nothing to leave */
    /* Linux before 5.6 has no openat2(): under --root a path is then opened
     * only when none of its components is a symbolic link, and a link
     * inside an image "cannot be resolved". */
    fd = TEMP_FAILURE_RETRY(openat(m->rootfd, path + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (fd < 0)
        return -1;
    inside = fstat(fd, &st) == 0 && !S_ISLNK(st.st_mode) && path_inside_root(m, fd, &real) == 0 && real &&
             strcmp(real, path) == 0;
    free(real);
    if (!inside) {
        close(fd);
        errno = ELOOP;
        return -1;
    }
    return fd;
}

/* Where a missing path would be: the target of its last component when
 * that is a dangling link, one link deep (enough for a mask to /dev/null in
 * an image without /dev), else the path itself. NULL on ENOMEM. */
static char *where_missing(const struct memo *m, const char *path)
{
    const char *name = strrchr(path, '/') + 1;
    char *dir = strndup(path, (size_t)(name - path)), *real = NULL, *ret = NULL, target[PATH_MAX];
    int fd = dir ? open_in_root(m, dir) : -1;
    ssize_t n = fd < 0 ? -1 : readlinkat(fd, name, target, sizeof(target) - 1);

    if (n >= 0)
        target[n] = '\0';
    if (!dir)
        ret = NULL;
    else if (n >= 0 && target[0] == '/')
        ret = strdup(target);
    else if (n >= 0 && path_inside_root(m, fd, &real) == 0 && real)
        ret = join(real, target);
    else
        ret = strdup(path); /* not a link, or one whose directory cannot be placed */
    if (ret)
        clean_path(ret, true);
    if (fd >= 0)
        close(fd);
    free(real);
    free(dir);
    return ret;
}

static void resolve_into(const struct memo *m, struct looked *l)
{
    CLEANUP_CLOSE int fd = open_in_root(m, l->path);
    struct stat st;

    if (fd < 0) {
        l->r = -errno;
        if (l->r == -ENOENT && !(l->data = where_missing(m, l->path)))
            l->r = -ENOMEM;
    } else if (fstat(fd, &st) < 0) {
        l->r = -errno;
    } else {
        l->mode = st.st_mode;
        l->rdev = st.st_rdev;
        l->r = path_inside_root(m, fd, &l->data);
    }
}

/* Reads the names of directory l->path (resolved already) into l->data. */
static void list_into(const struct memo *m, struct looked *l)
{
    struct dirent *de;
    FILE *names;
    DIR *d;
    int fd = TEMP_FAILURE_RETRY(openat(m->rootfd, l->path[1] ? l->path + 1 : ".",
                                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));

    if (fd < 0) {
        l->r = -errno;
        return;
    }
    l->opened = true;
    d = fdopendir(fd);
    if (!d) {
        l->r = -errno; /* EMFILE, ENOMEM...: said as for any other unlistable one */
        close(fd);
        return;
    }
    names = open_memstream(&l->data, &l->len);
    // cppcheck-suppress readdirCalled ; readdir_r is deprecated (glibc 2.24); this DIR is not shared
    for (errno = 0; names && (de = readdir(d)); errno = 0)
        (void)fwrite(de->d_name, 1, strlen(de->d_name) + 1, names);
    l->r = names ? -errno : -ENOMEM;
    /* fclose() need not report a failed write: check the flag too. */
    if (names && ferror(names))
        l->r = -ENOMEM;
    if (names && fclose(names) != 0)
        l->r = -ENOMEM;
    closedir(d);
}

/* Reads the bytes of file l->path (resolved already) into l->data. */
static void read_into(const struct memo *m, struct looked *l)
{
    CLEANUP_FREE char *host = NULL;

    l->r = asprintf(&host, "%s%s", m->prefix, l->path) < 0
               ? -ENOMEM
               : fsutil_read_file(host, SYSCTLD_FILE_MAX_BYTES, true, &l->data, &l->len, NULL);
}

/* What a look of kind at path (inside root) found, looked at on the first
 * call only (see struct looked); NULL on ENOMEM. */
static const struct looked *memo_get(struct memo *m, enum look kind, const char *path)
{
    static void (*const look_at[])(const struct memo *, struct looked *) = {
        [LOOK_RESOLVE] = resolve_into, [LOOK_LIST] = list_into, [LOOK_READ] = read_into,
    };
    struct looked *l;

    for (size_t i = 0; i < m->n; i++)
        if (m->items[i].kind == kind && strcmp(m->items[i].path, path) == 0)
            return &m->items[i];
    if (!grow((void **)&m->items, &m->cap, m->n, sizeof(*m->items)))
        return NULL;
    l = &m->items[m->n];
    *l = (struct looked){ .kind = kind, .path = strdup(path) };
    if (!l->path)
        return NULL;
    m->n++;
    look_at[kind](m, l);
    return l;
}

/* One line naming a key. */
struct seen {
    char *name;
    char *value; /* NULL: an exclusion */
    bool glob, exact, ignore_failure;
    const char *path; /* the file as the tool names it (a conffile's, or a literal) */
    unsigned line;
};

struct keystate {
    /* What the tool will write, in order: for procps every line; for
     * systemd its ordered hashmap, one entry per name. */
    struct seen *seen;
    size_t nseen, cap;
    size_t total; /* lines naming the key, those not analysed too */
};

struct conffile {
    char *name;    /* the file name, which masks and sorts */
    char *path;    /* as the tool names it */
    char *resolve; /* where to look for it inside root */
};

/* A file as it will be rather than as it is (sysctld_analyse_pending). */
struct pending {
    const char *dir;     /* its directory, resolved inside root (owned by the memo) */
    char *real;          /* dir + "/" + name; NULL: no pending file */
    const char *name;
    const char *text;    /* NULL: the file will be gone */
    size_t len;
};

struct analyser {
    enum sysctld_rules rules;
    struct sysctld_analysis *a;
    const char *const *names; /* the keys as given */
    struct keystate keys[SYSCTLD_MAX_KEYS];
    size_t nkeys;
    const char *parsing; /* the file being parsed, as the tool names it (outlives seen[]) */
    struct conffile *files;
    size_t nfiles, capfiles;
    struct pending pending;
    struct memo *memo;
    bool oom;
};

static void add_warning(struct analyser *an, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(struct analyser *an, const char *fmt, ...)
{
    struct sysctld_analysis *a = an->a;
    va_list ap;

    if (a->nwarnings >= SYSCTLD_MAX_WARNINGS) {
        a->dropped_warnings++;
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(a->warnings[a->nwarnings++], sizeof(a->warnings[0]), fmt, ap);
    va_end(ap);
}

/* The winners may be wrong now; the first reason (the warning just
 * added) is kept for the one message that has to give it. */
static void mark_incomplete(struct analyser *an)
{
    struct sysctld_analysis *a = an->a;

    if (!a->incomplete && a->nwarnings > 0 && a->dropped_warnings == 0)
        a->incomplete_why = a->warnings[a->nwarnings - 1];
    a->incomplete = true;
}

static void free_seen(struct seen *s)
{
    free(s->name);
    free(s->value);
}

/* systemd-sysctl keeps one entry per name in an ordered hashmap. The same
 * value again keeps the entry where it was, with this line's credit, and
 * returns true; a different value, or an exclusion, drops the old entry
 * for the new one to be appended: so an exclusion cancels an assignment. */
static bool systemd_replaces(struct keystate *ks, const struct seen *s)
{
    for (size_t i = 0; i < ks->nseen; i++) {
        struct seen *old = &ks->seen[i];
        bool same;

        if (strcmp(old->name, s->name) != 0)
            continue;
        same = old->value && s->value ? strcmp(old->value, s->value) == 0 : old->value == s->value;
        free_seen(old);
        if (same) {
            *old = *s;
            return true;
        }
        memmove(old, old + 1, (ks->nseen - i - 1) * sizeof(*old));
        ks->nseen--;
        return false;
    }
    return false;
}

static void on_line(void *ctx, const struct sysctld_line *l)
{
    struct analyser *an = ctx;
    struct keystate *ks = &an->keys[l->key_index];
    struct seen s;

    if (an->oom)
        return;
    ks->total++;
    if (l->uncertain) {
        add_warning(an, "%s:%u: %s: systemd-sysctl and sysctl --system read this line differently (a NUL, "
                        "carriage return, vertical tab or form feed in it or before it), not analysed",
                    an->parsing, l->line, an->names[l->key_index]);
        mark_incomplete(an);
        return;
    }
    s = (struct seen){
        .name = strdup(l->name),
        .value = l->value ? strndup(l->value, l->value_len) : NULL,
        .glob = l->glob,
        .exact = l->exact,
        .ignore_failure = l->ignore_failure,
        .path = an->parsing,
        .line = l->line,
    };
    if (!s.name || (l->value && !s.value))
        goto oom;
    /* procps 4.0.2 keeps every line and writes them in order. */
    if (an->rules == SYSCTLD_SYSTEMD && systemd_replaces(ks, &s))
        return;
    if (!grow((void **)&ks->seen, &ks->cap, ks->nseen, sizeof(s)))
        goto oom;
    ks->seen[ks->nseen++] = s;
    return;
oom:
    free_seen(&s);
    an->oom = true;
}

/* About the file parsed last, as the tool names it. */
static void on_warning(void *ctx, unsigned line, const char *why)
{
    struct analyser *an = ctx;

    add_warning(an, "%s:%u: %s", an->parsing, line, why);
}

/* Parses one file's text, known to the tool as path. */
static void parse_buffer(struct analyser *an, const char *path, const char *buf, size_t len)
{
    /* Both tools read such a file anyway, line by line: so is it. */
    if (memchr(buf, '\0', len))
        add_warning(an, "%s: contains NUL bytes", path);
    an->parsing = path;
    if (sysctld_parse_text(an->rules, buf, len, an->names, an->nkeys, on_line, on_warning, an) < 0)
        an->oom = true;
}

/* Reads and parses one regular file (real, resolved inside root) that the
 * tool knows as path. */
static void read_and_parse(struct analyser *an, const char *path, const char *real)
{
    /* real has no symbolic links left, so a link here now is a race. */
    const struct looked *l = memo_get(an->memo, LOOK_READ, real);
    int r = l ? l->r : -ENOMEM;

    if (r == -ENOMEM) {
        an->oom = true;
    } else if (r == -EFBIG) {
        add_warning(an, "%s: larger than %zu bytes, not analysed", path, SYSCTLD_FILE_MAX_BYTES);
        mark_incomplete(an);
    } else if (r < 0) {
        add_warning(an, "%s: cannot be read (%s), not analysed", path, fsutil_strerror(r));
        mark_incomplete(an);
    } else {
        parse_buffer(an, path, l->data, l->len);
    }
}

/* The pending file, reached by name or through a link; true when handled. */
static bool parse_pending(struct analyser *an, const char *path, const char *real)
{
    if (!an->pending.real || strcmp(real, an->pending.real) != 0)
        return false;
    if (an->pending.text)
        parse_buffer(an, path, an->pending.text, an->pending.len);
    else
        add_warning(an, "%s: dangling symbolic link once the file is removed, skipped", path);
    return true;
}

/* Whether a resolved path (found or missing) is /dev/null. */
static bool is_dev_null(const struct looked *l)
{
    return strcmp(l->data, "/dev/null") == 0 || (l->r == 0 && S_ISCHR(l->mode) && l->rdev == makedev(1, 3));
}

#define STILL_MASKS "skipped (it still masks same-named files in later directories)"

/* One *.conf entry the tool will open, in boot order. */
static void analyse_file(struct analyser *an, const struct conffile *f)
{
    const struct looked *l;
    int r;

    if (parse_pending(an, f->path, f->resolve))
        return;
    l = memo_get(an->memo, LOOK_RESOLVE, f->resolve);
    if (!l) {
        an->oom = true;
        return;
    }
    r = l->r;
    if ((r == 0 || r == -ENOENT) && parse_pending(an, f->path, l->data))
        return;
    /* A link to /dev/null is the documented way to mask a file. */
    if ((r == 0 || r == -ENOENT) && is_dev_null(l))
        return;
    if (r == -ENOMEM) {
        an->oom = true;
    } else if (r == -ENOENT) {
        add_warning(an, "%s: dangling symbolic link, " STILL_MASKS, f->path);
    } else if (r < 0) {
        add_warning(an, "%s: cannot be resolved (%s), " STILL_MASKS, f->path, strerror(-r));
    } else if (S_ISREG(l->mode)) {
        read_and_parse(an, f->path, l->data);
    } else if (S_ISDIR(l->mode)) {
        add_warning(an, "%s: is a directory, " STILL_MASKS, f->path);
    } else if (S_ISFIFO(l->mode)) {
        /* Both tools wait for a writer, and apply only after reading every
         * file: nothing is applied (systemd-sysctl.service times out). */
        add_warning(an, "%s: is a FIFO, %s would block opening it and apply nothing", f->path,
                    sysctld_rules_name(an->rules));
        an->a->blocked = true;
    } else if (S_ISCHR(l->mode) || S_ISBLK(l->mode)) {
        add_warning(an, "%s: is a device node, not analysed", f->path);
        mark_incomplete(an);
    } else {
        add_warning(an, "%s: is not a regular file, skipped", f->path);
    }
}

/* What the tool applies after every drop-in. procps reads /etc/sysctl.conf
 * only when stat() says it is a regular file: a FIFO there is skipped, not
 * waited on. */
static void analyse_last_file(struct analyser *an)
{
    const char *path = an->rules == SYSCTLD_PROCPS ? PROCPS_LAST_FILE : SYSTEMD_CREDENTIAL;
    const struct looked *l = memo_get(an->memo, LOOK_RESOLVE, path);

    if (!l || l->r == -ENOMEM) {
        an->oom = true;
    } else if (an->rules == SYSCTLD_SYSTEMD) {
        if (l->r == 0) {
            add_warning(an, "%s: a sysctl.extra credential is applied after every file, not analysed", path);
            mark_incomplete(an);
        }
    } else if ((l->r == 0 || l->r == -ENOENT) && parse_pending(an, path, l->data)) {
        return;
    } else if (l->r == 0 && S_ISREG(l->mode)) {
        read_and_parse(an, path, l->data);
    } else if (l->r == 0 && !is_dev_null(l)) {
        add_warning(an, "%s: is not a regular file, skipped by sysctl --system", path);
    }
}

static bool wanted_name(enum sysctld_rules rules, const char *name)
{
    size_t n = strlen(name);

    if (n < 5 || strcmp(name + n - 5, ".conf") != 0)
        return false;
    /* systemd skips hidden files; procps reads every name ending in ".conf",
     * ".conf" itself included. */
    return rules == SYSCTLD_PROCPS || name[0] != '.';
}

/* Adds name from directory shown (real inside root) unless already there. */
static void add_file(struct analyser *an, const char *shown, const char *real, const char *name)
{
    struct conffile *f;

    if (!wanted_name(an->rules, name))
        return;
    for (size_t i = 0; i < an->nfiles; i++)
        if (strcmp(an->files[i].name, name) == 0)
            return;
    if (!grow((void **)&an->files, &an->capfiles, an->nfiles, sizeof(*an->files))) {
        an->oom = true;
        return;
    }
    f = &an->files[an->nfiles];
    *f = (struct conffile){ strdup(name), join(shown, name), join(real, name) };
    an->nfiles++;
    if (!f->name || !f->path || !f->resolve)
        an->oom = true;
}

static bool is_pending_dir(const struct analyser *an, const char *real)
{
    return an->pending.real && strcmp(real, an->pending.dir) == 0;
}

/* Adds the *.conf names of one directory that no earlier directory had:
 * a name found first in a higher-priority directory masks the others. */
static void list_directory(struct analyser *an, const char *shown, const char *real)
{
    const struct looked *l = memo_get(an->memo, LOOK_LIST, real);
    const char *pending = is_pending_dir(an, real) ? an->pending.name : NULL;

    if (!l) {
        an->oom = true;
        return;
    }
    for (const char *name = l->data; name && name < l->data + l->len && !an->oom; name += strlen(name) + 1) {
        /* A pending removal: the file will not be there. */
        if (pending && !an->pending.text && strcmp(name, pending) == 0)
            continue;
        add_file(an, shown, real, name);
    }
    if (l->r < 0) {
        add_warning(an, "%s: cannot be %s (%s), not analysed", shown, l->opened ? "listed" : "opened", strerror(-l->r));
        mark_incomplete(an);
    }
    if (l->opened && pending && an->pending.text)
        add_file(an, shown, real, pending);
}

static int compare_files(const void *x, const void *y)
{
    /* Both tools sort by file name with strcmp, across all directories. */
    return strcmp(((const struct conffile *)x)->name, ((const struct conffile *)y)->name);
}

static void list_files(struct analyser *an)
{
    const char *const *dirs = sysctld_dirs;

    for (size_t i = 0; dirs[i] && !an->oom && (an->rules == SYSCTLD_PROCPS || dirs[i + 1]); i++) {
        const struct looked *l = memo_get(an->memo, LOOK_RESOLVE, dirs[i]);
        const char *real = l ? l->data : NULL;
        /* systemd names files by the resolved directory, procps by the one
         * it opened. */
        const char *shown = an->rules == SYSCTLD_SYSTEMD ? real : dirs[i];
        int r = l ? l->r : -ENOMEM;

        if (r == -ENOMEM) {
            an->oom = true;
            continue;
        }
        if (r == -ENOENT) {
            /* A drop-in about to be written creates its directory. */
            if (is_pending_dir(an, real) && an->pending.text)
                add_file(an, shown, real, an->pending.name);
            continue;
        }
        if (r < 0) {
            add_warning(an, "%s: cannot be resolved (%s), not analysed", dirs[i], strerror(-r));
            mark_incomplete(an);
            continue;
        }
        if (!S_ISDIR(l->mode)) {
            add_warning(an, "%s: is not a directory, ignored", dirs[i]);
            continue;
        }
        /* A second view of one directory (/lib -> usr/lib) adds nothing. */
        list_directory(an, shown, real);
    }
    if (an->nfiles > 1 && !an->oom)
        qsort(an->files, an->nfiles, sizeof(*an->files), compare_files);
}

static void copy_value(char ret[SYSCTLD_VALUE_MAX], const char *value)
{
    size_t n = value ? strlen(value) : 0, keep = n < SYSCTLD_VALUE_MAX ? n : SYSCTLD_VALUE_MAX - 4;

    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)value[i];
        ret[i] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
    }
    memcpy(ret + keep, keep < n ? "..." : "", keep < n ? sizeof("...") : 1);
}

/* Which line the tool writes last. Both tools write explicit names in list
 * order and expand a glob only onto keys that no entry names exactly (an
 * exclusion counts), whatever the order: so an explicit "kernel.shmmax"
 * anywhere beats every glob, and exclusions themselves write nothing. */
static void fill_report(const struct analyser *an, const struct keystate *ks, const char *key,
                        struct sysctld_key_report *ret)
{
    bool exact_exists = false;
    const struct seen *winner = NULL;

    (void)snprintf(ret->key, sizeof(ret->key), "%s", key);
    ret->total = ks->total;
    for (size_t i = 0; i < ks->nseen; i++)
        exact_exists = exact_exists || ks->seen[i].exact;
    for (size_t i = 0; i < ks->nseen; i++) {
        const struct seen *s = &ks->seen[i];

        if (!s->value || (s->glob && exact_exists))
            continue;
        winner = s;
    }
    if (!winner || an->a->blocked)
        return;
    ret->winner = (struct sysctld_assignment){
        .known = true, .line = winner->line, .glob = winner->glob, .ignore_failure = winner->ignore_failure,
    };
    (void)snprintf(ret->winner.path, sizeof(ret->winner.path), "%s", winner->path);
    copy_value(ret->winner.value, winner->value);
}

/* Where the pending file will be, resolved inside root like everything
 * else; its directory need not exist yet. */
static int set_pending(struct analyser *an, const char *path, const char *text, size_t len)
{
    const char *slash = strrchr(path, '/');
    const struct looked *l;
    char *dir;

    if (!slash || path[0] != '/' || !slash[1] || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0 ||
        (!text && len > 0))
        return -EINVAL;
    dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    l = dir ? memo_get(an->memo, LOOK_RESOLVE, dir) : NULL;
    free(dir);
    if (!l)
        return -ENOMEM;
    if (l->r < 0 && l->r != -ENOENT)
        return l->r;
    if (!l->data)
        return -ENOMEM;
    an->pending = (struct pending){
        .dir = l->data, .real = join(l->data, slash + 1),
        .name = slash + 1, .text = text, .len = len,
    };
    return an->pending.real ? 0 : -ENOMEM;
}

static void analyser_free(struct analyser *an)
{
    for (size_t i = 0; i < SYSCTLD_MAX_KEYS; i++) {
        for (size_t j = 0; j < an->keys[i].nseen; j++)
            free_seen(&an->keys[i].seen[j]);
        free(an->keys[i].seen);
    }
    for (size_t i = 0; i < an->nfiles; i++) {
        free(an->files[i].name);
        free(an->files[i].path);
        free(an->files[i].resolve);
    }
    free(an->files);
    free(an->pending.real);
    sysctld_analysis_free(an->a);
}

static int analyse(struct memo *memo, enum sysctld_rules rules, const char *const *keys, size_t nkeys,
                   const char *pending_path, const char *pending_text, size_t pending_len,
                   struct sysctld_analysis **ret)
{
    struct analyser an = { .rules = rules, .names = keys, .nkeys = nkeys, .memo = memo };
    int r = pending_path ? set_pending(&an, pending_path, pending_text, pending_len) : 0;

    if (r == 0 && !(an.a = calloc(1, sizeof(*an.a))))
        r = -ENOMEM;
    if (r == 0) {
        an.a->rules = rules;
        an.a->nkeys = nkeys;
        /* Every file the tool reads, in its order. */
        list_files(&an);
        for (size_t i = 0; i < an.nfiles && !an.oom; i++)
            analyse_file(&an, &an.files[i]);
        if (!an.oom)
            analyse_last_file(&an);
        r = an.oom ? -ENOMEM : 0;
    }
    if (r == 0) {
        for (size_t i = 0; i < nkeys; i++)
            fill_report(&an, &an.keys[i], keys[i], &an.a->keys[i]);
        *ret = an.a;
        an.a = NULL;
    }
    analyser_free(&an);
    return r;
}

void sysctld_analysis_free(struct sysctld_analysis *a)
{
    free(a);
}

int sysctld_analyse_both(const char *root, const char *const *keys, size_t nkeys, const char *pending_path,
                         const char *pending_text, size_t pending_len,
                         struct sysctld_analysis *ret[SYSCTLD_RULE_SETS])
{
    struct sysctld_analysis *got[SYSCTLD_RULE_SETS] = { NULL };
    struct memo memo;
    int r;

    /* Parsing no text checks the keys alone. */
    if (!ret || sysctld_parse_text(SYSCTLD_SYSTEMD, NULL, 0, keys, nkeys, on_line, NULL, NULL) < 0)
        return -EINVAL;
    r = memo_open(&memo, root);
    for (int rules = 0; rules < SYSCTLD_RULE_SETS && r == 0; rules++)
        r = analyse(&memo, rules, keys, nkeys, pending_path, pending_text, pending_len, &got[rules]);
    memo_free(&memo);
    for (int rules = 0; rules < SYSCTLD_RULE_SETS; rules++) {
        if (r == 0)
            ret[rules] = got[rules];
        else
            sysctld_analysis_free(got[rules]);
    }
    return r;
}

int sysctld_analyse_pending(const char *root, enum sysctld_rules rules, const char *const *keys,
                            size_t nkeys, const char *pending_path, const char *pending_text,
                            size_t pending_len, struct sysctld_analysis **ret)
{
    struct sysctld_analysis *both[SYSCTLD_RULE_SETS];
    int r = -EINVAL;

    if (ret && (rules == SYSCTLD_SYSTEMD || rules == SYSCTLD_PROCPS))
        r = sysctld_analyse_both(root, keys, nkeys, pending_path, pending_text, pending_len, both);
    if (r == 0) {
        *ret = both[rules];
        sysctld_analysis_free(both[1 - rules]);
    }
    return r;
}

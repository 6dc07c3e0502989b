#include "profile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "fsutil.h"
#include "hash.h"
#include "testing.h"

#define MAX_DEPTH 8
#define MAX_DIAGS 100

extern const unsigned char shmprov_default_profile[];
extern const size_t shmprov_default_profile_len;

/* ---- names ------------------------------------------------------------ */

static const char *const tier_names[] = { "auto", "small", "medium", "large" };
static const char *const workload_names[] = { "general", "database", "bigdata" };
static const char *const policy_names[] = { "enforce", "raise-only" };

const char *profile_tier_name(enum ram_tier tier) { return tier_names[tier]; }
const char *profile_workload_name(enum workload workload) { return workload_names[workload]; }
const char *profile_policy_name(enum policy policy) { return policy_names[policy]; }

/* ---- diagnostics ------------------------------------------------------ */

void profile_diags_init(struct profile_diags *d, const char *file)
{
    memset(d, 0, sizeof(*d));
    d->file = strdup(file);
}

void profile_diags_free(struct profile_diags *d)
{
    for (size_t i = 0; i < d->count; i++)
        free(d->items[i].message);
    free(d->items);
    free(d->file);
    memset(d, 0, sizeof(*d));
}

int profile_diags_add(struct profile_diags *d, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    int n;

    if (d->count >= MAX_DIAGS)
        return 0;
    if (d->count == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct profile_diag *items = realloc(d->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        d->items = items;
        d->cap = cap;
    }
    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    d->items[d->count++] = (struct profile_diag){ line ? line : 1, col ? col : 1, msg };
    return 0;
}

void profile_diags_print(const struct profile_diags *d)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(stderr, "%s:%u:%u: error: %s\n", d->file ? d->file : "?", d->items[i].line,
                d->items[i].col, d->items[i].message);
    if (d->count >= MAX_DIAGS)
        fprintf(stderr, "%s: too many errors, stopped after %d\n", d->file ? d->file : "?",
                MAX_DIAGS);
}

/* ---- a small tree of the YAML document ---------------------------------
 * Built from libyaml events rather than its document API, because anchors
 * and aliases must be seen (and refused) before anything is expanded. */

enum ynode_type { Y_SCALAR, Y_MAPPING, Y_SEQUENCE };

struct ynode {
    enum ynode_type type;
    unsigned line, col;
    char *value; /* scalars only */
    bool plain;  /* unquoted scalar */
    bool poisoned; /* already reported (alias, anchor, tag): check nothing more */
    struct ynode **kids; /* mappings: key, value, key, value, ... */
    size_t nkids;
};

static void ynode_free(struct ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        ynode_free(n->kids[i]);
    free(n->kids);
    free(n->value);
    free(n);
}

struct reader {
    yaml_parser_t parser;
    struct profile_diags *diags;
    const char *buf; /* the document, for looking at what libyaml stopped on */
    size_t len;
    bool seen_alias, seen_anchor, seen_tag; /* each reported once per file */
    int oom;
};

static unsigned mark_line(yaml_mark_t m) { return (unsigned)m.line + 1; }
static unsigned mark_col(yaml_mark_t m) { return (unsigned)m.column + 1; }

static void add_diag(struct reader *rd, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_diag(struct reader *rd, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) {
        rd->oom = 1;
        va_end(ap);
        return;
    }
    va_end(ap);
    if (profile_diags_add(rd->diags, line, col, "%s", msg) < 0)
        rd->oom = 1;
    free(msg);
}

/* libyaml stops at its first syntax error; report it where it points, in
 * words an operator can act on where libyaml's are cryptic. */
static void add_parser_error(struct reader *rd)
{
    yaml_parser_t *p = &rd->parser;
    yaml_mark_t m = p->problem_mark;

    if (p->error == YAML_MEMORY_ERROR) {
        rd->oom = 1;
        return;
    }
    if (m.index < rd->len && rd->buf[m.index] == '\t') {
        add_diag(rd, mark_line(m), mark_col(m),
                 "invalid YAML: tab character (YAML indents with spaces only)");
        return;
    }
    /* At the end of the file the problem's position helps nobody; where the
     * unfinished construct started does (an unclosed quote, say). */
    if (p->context && m.index >= rd->len) {
        yaml_mark_t c = p->context_mark;
        add_diag(rd, mark_line(c), mark_col(c), "invalid YAML: %s %s that starts here", p->problem,
                 p->context);
        return;
    }
    if (p->context)
        add_diag(rd, mark_line(m), mark_col(m), "invalid YAML: %s %s", p->problem, p->context);
    else
        add_diag(rd, mark_line(m), mark_col(m), "invalid YAML: %s",
                 p->problem ? p->problem : "syntax error");
}

static int next_event(struct reader *rd, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&rd->parser, ev)) {
        add_parser_error(rd);
        return -EINVAL;
    }
    return 0;
}

static const char *event_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return (const char *)ev->data.scalar.anchor;
    case YAML_MAPPING_START_EVENT:
        return (const char *)ev->data.mapping_start.anchor;
    case YAML_SEQUENCE_START_EVENT:
        return (const char *)ev->data.sequence_start.anchor;
    default:
        return NULL;
    }
}

static const char *event_tag(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        /* A plain scalar carries no tag unless one was written. */
        return (const char *)ev->data.scalar.tag;
    case YAML_MAPPING_START_EVENT:
        return ev->data.mapping_start.implicit ? NULL : (const char *)ev->data.mapping_start.tag;
    case YAML_SEQUENCE_START_EVENT:
        return ev->data.sequence_start.implicit ? NULL : (const char *)ev->data.sequence_start.tag;
    default:
        return NULL;
    }
}

static int add_kid(struct reader *rd, struct ynode *parent, struct ynode *kid)
{
    struct ynode **kids = realloc(parent->kids, (parent->nkids + 1) * sizeof(struct ynode *));
    if (!kids) {
        rd->oom = 1;
        ynode_free(kid);
        return -ENOMEM;
    }
    parent->kids = kids;
    parent->kids[parent->nkids++] = kid;
    return 0;
}

/* Builds the node that starts with *ev (consumed). Returns the node or NULL
 * after recording why; on NULL the caller stops reading. */
static struct ynode *read_node(struct reader *rd, yaml_event_t *ev, unsigned depth)
{
    struct ynode *node = NULL;
    yaml_event_type_t end_type;
    unsigned line = mark_line(ev->start_mark), col = mark_col(ev->start_mark);

    /* Refused, never expanded; the rest of the file is still checked, and
     * each kind is reported once (a billion-laughs file has thousands). */
    if (event_anchor(ev) && !rd->seen_anchor) {
        rd->seen_anchor = true;
        add_diag(rd, line, col, "YAML anchors (&name) are not allowed in a profile");
    }
    if (event_tag(ev) && !rd->seen_tag) {
        rd->seen_tag = true;
        add_diag(rd, line, col, "YAML tags (!tag) are not allowed in a profile");
    }
    if (depth > MAX_DEPTH) {
        add_diag(rd, line, col, "nesting is deeper than %d levels", MAX_DEPTH);
        goto fail;
    }

    node = calloc(1, sizeof(*node));
    if (!node) {
        rd->oom = 1;
        goto fail;
    }
    node->line = line;
    node->col = col;

    if (ev->type == YAML_ALIAS_EVENT) {
        if (!rd->seen_alias) {
            rd->seen_alias = true;
            add_diag(rd, line, col, "YAML aliases (*name) are not allowed in a profile");
        }
        /* Stands in for the alias so its key is not also called missing. */
        node->type = Y_SCALAR;
        node->poisoned = true;
        node->value = strdup("");
        if (!node->value)
            rd->oom = 1;
        yaml_event_delete(ev);
        return node->value ? node : (ynode_free(node), NULL);
    }
    if (event_anchor(ev) || event_tag(ev))
        node->poisoned = true;

    if (ev->type == YAML_SCALAR_EVENT) {
        node->type = Y_SCALAR;
        node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) {
            add_diag(rd, line, col, "NUL character in a value");
            goto fail;
        }
        node->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        if (!node->value) {
            rd->oom = 1;
            goto fail;
        }
        yaml_event_delete(ev);
        return node;
    }

    if (ev->type == YAML_MAPPING_START_EVENT) {
        node->type = Y_MAPPING;
        end_type = YAML_MAPPING_END_EVENT;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        node->type = Y_SEQUENCE;
        end_type = YAML_SEQUENCE_END_EVENT;
    } else {
        add_diag(rd, line, col, "unexpected YAML structure");
        goto fail;
    }
    yaml_event_delete(ev);

    for (;;) {
        yaml_event_t kid_ev;
        struct ynode *kid;

        if (next_event(rd, &kid_ev) < 0)
            goto fail_node;
        if (kid_ev.type == end_type) {
            yaml_event_delete(&kid_ev);
            return node;
        }
        kid = read_node(rd, &kid_ev, depth + 1);
        if (!kid)
            goto fail_node;
        if (add_kid(rd, node, kid) < 0)
            goto fail_node;
    }

fail:
    yaml_event_delete(ev);
fail_node:
    ynode_free(node);
    return NULL;
}

/* Reads exactly one document. Returns its root, or NULL (diagnostics
 * recorded; an empty stream is reported as such). */
static struct ynode *read_document(struct reader *rd)
{
    yaml_event_t ev;
    struct ynode *root = NULL;

    if (next_event(rd, &ev) < 0) /* STREAM-START */
        return NULL;
    yaml_event_delete(&ev);
    if (next_event(rd, &ev) < 0)
        return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        add_diag(rd, 1, 1, "empty profile: expected a mapping starting with 'version: 1'");
        yaml_event_delete(&ev);
        return NULL;
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */

    if (next_event(rd, &ev) < 0)
        return NULL;
    root = read_node(rd, &ev, 0);
    if (!root)
        return NULL;

    if (next_event(rd, &ev) < 0) /* DOCUMENT-END */
        goto fail;
    yaml_event_delete(&ev);
    if (next_event(rd, &ev) < 0)
        goto fail;
    if (ev.type != YAML_STREAM_END_EVENT) {
        add_diag(rd, mark_line(ev.start_mark), mark_col(ev.start_mark),
                 "more than one YAML document; a profile is a single document");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    return root;
fail:
    ynode_free(root);
    return NULL;
}

/* ---- encoding ----------------------------------------------------------
 * libyaml reports bad UTF-8 by byte offset only and silently accepts
 * UTF-16; checking first gives a line and column and one encoding. */

static size_t utf8_sequence_length(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int check_encoding(struct reader *rd, const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    unsigned line = 1, col = 1;

    if (len >= 2 && ((s[0] == 0xff && s[1] == 0xfe) || (s[0] == 0xfe && s[1] == 0xff))) {
        add_diag(rd, 1, 1, "UTF-16 byte-order mark: a profile is UTF-8 text");
        return -EINVAL;
    }

    for (size_t i = 0; i < len;) {
        size_t n;
        if (s[i] == '\0') {
            add_diag(rd, line, col, "NUL byte: a profile is UTF-8 text");
            return -EINVAL;
        }
        n = utf8_sequence_length(s + i, len - i);
        if (n == 0) {
            add_diag(rd, line, col, "invalid UTF-8 (byte 0x%02x): a profile is UTF-8 text", s[i]);
            return -EINVAL;
        }
        if (s[i] == '\n')
            line++, col = 1;
        else
            col++;
        i += n;
    }
    return 0;
}

/* ---- schema ------------------------------------------------------------ */

struct walk {
    struct reader *rd;
    struct profile *p;
};

static const char *type_name(const struct ynode *n)
{
    switch (n->type) {
    case Y_MAPPING:
        return "a mapping";
    case Y_SEQUENCE:
        return "a list";
    default:
        return n->plain && n->value[0] == '\0' ? "empty" : "a scalar";
    }
}

static bool expect_scalar(struct walk *w, const char *key, const struct ynode *v)
{
    if (v->poisoned)
        return false;
    if (v->type == Y_SCALAR && !(v->plain && v->value[0] == '\0'))
        return true;
    add_diag(w->rd, v->line, v->col, "'%s' must be a value, not %s", key, type_name(v));
    return false;
}

static bool expect_mapping(struct walk *w, const char *key, const struct ynode *v)
{
    if (v->poisoned)
        return false;
    if (v->type == Y_MAPPING)
        return true;
    add_diag(w->rd, v->line, v->col, "'%s' must be a mapping, not %s", key, type_name(v));
    return false;
}

static void parse_enum(struct walk *w, const char *key, const struct ynode *v,
                       const char *const *names, size_t count, int *ret)
{
    char allowed[128] = "";

    if (!expect_scalar(w, key, v))
        return;
    for (size_t i = 0; i < count; i++)
        if (strcmp(v->value, names[i]) == 0) {
            *ret = (int)i;
            return;
        }
    for (size_t i = 0; i < count; i++) {
        size_t used = strlen(allowed);
        (void)snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i ? ", " : "", names[i]);
    }
    add_diag(w->rd, v->line, v->col, "'%s' must be one of %s, not '%s'", key, allowed, v->value);
}

/* Integers must be written as YAML integers: a quoted "4096" is a string. */
static bool parse_integer(struct walk *w, const char *key, const struct ynode *v, uint64_t min,
                          uint64_t max, const char *unit, uint64_t *ret)
{
    const char *why;
    uint64_t value;

    if (v->poisoned)
        return false;
    if (v->type != Y_SCALAR || (v->plain && v->value[0] == '\0')) {
        add_diag(w->rd, v->line, v->col, "'%s' must be an integer, not %s", key, type_name(v));
        return false;
    }
    if (!v->plain) {
        add_diag(w->rd, v->line, v->col, "'%s' must be an integer, not a quoted string", key);
        return false;
    }
    if (sizes_parse_uint(v->value, &value, &why) < 0) {
        add_diag(w->rd, v->line, v->col, "'%s': %s: '%s'", key, why, v->value);
        return false;
    }
    if (value < min || value > max) {
        add_diag(w->rd, v->line, v->col, "'%s' must be from %llu to %llu%s, not %llu", key,
                 (unsigned long long)min, (unsigned long long)max, unit, (unsigned long long)value);
        return false;
    }
    *ret = value;
    return true;
}

/* The kernel's own default (ULONG_MAX - 2^24) is the largest sensible limit. */
#define LIMIT_MAX UINT64_C(18446744073692774399)

static void parse_size_limit(struct walk *w, const char *key, const struct ynode *v,
                             bool percent_ok, bool bare_is_pages, struct profile_limit *ret)
{
    struct size_value size;
    const char *why;
    bool bare;

    if (!expect_scalar(w, key, v))
        return;
    if (sizes_parse(v->value, percent_ok, &size, &why) < 0) {
        add_diag(w->rd, v->line, v->col, "'%s': %s: '%s'", key, why, v->value);
        return;
    }
    bare = size.kind == SIZE_BYTES && v->value[strspn(v->value, "0123456789")] == '\0';
    if (size.kind == SIZE_BYTES && (size.value == 0 || size.value > LIMIT_MAX)) {
        add_diag(w->rd, v->line, v->col, "'%s' must be from 1 to %llu %s, not %s", key,
                 (unsigned long long)LIMIT_MAX, bare && bare_is_pages ? "pages" : "bytes", v->value);
        return;
    }
    ret->set = true;
    ret->size = size;
    ret->in_pages = bare && bare_is_pages;
    ret->mark = (struct profile_mark){ v->line, v->col };
}

/* Absolute, printable, no white space: these paths end up in messages, in
 * the drop-in header and in open() calls made as root. */
static bool parse_path(struct walk *w, const char *key, const struct ynode *v, char **ret)
{
    const unsigned char *s;
    size_t len;

    if (!expect_scalar(w, key, v))
        return false;
    if (v->value[0] != '/') {
        add_diag(w->rd, v->line, v->col, "'%s' must be an absolute path, not '%s'", key, v->value);
        return false;
    }
    for (s = (const unsigned char *)v->value; *s; s++)
        if (*s <= ' ' || *s == 0x7f) {
            add_diag(w->rd, v->line, v->col, "'%s' must not contain white space or control characters", key);
            return false;
        }
    len = strlen(v->value);
    if (strstr(v->value, "/../") || (len >= 3 && strcmp(v->value + len - 3, "/..") == 0)) {
        add_diag(w->rd, v->line, v->col, "'%s' must not contain '..'", key);
        return false;
    }
    free(*ret);
    *ret = strdup(v->value);
    if (!*ret)
        w->rd->oom = 1;
    return *ret != NULL;
}

/* systemd-sysctl and sysctl --system read only these directories: a drop-in
 * anywhere else would silently never be applied at boot. */
static const char *const sysctl_dirs[] = {
    "/etc/sysctl.d/", "/run/sysctl.d/", "/usr/local/lib/sysctl.d/", "/usr/lib/sysctl.d/",
    "/lib/sysctl.d/",
};

int profile_check_dropin_path(const char *path)
{
    const char *name = NULL;
    size_t len;

    for (size_t i = 0; i < sizeof(sysctl_dirs) / sizeof(sysctl_dirs[0]); i++)
        if (strncmp(path, sysctl_dirs[i], strlen(sysctl_dirs[i])) == 0)
            name = path + strlen(sysctl_dirs[i]);
    if (!name)
        return -ENOTDIR;
    len = strlen(name);
    if (len <= 5 || strcmp(name + len - 5, ".conf") != 0 ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len || name[0] == '.')
        return -EINVAL;
    return 0;
}

static void parse_dropin(struct walk *w, const struct ynode *v)
{
    char *path = NULL;
    int r;

    if (!parse_path(w, "dropin", v, &path))
        return;
    r = profile_check_dropin_path(path);
    if (r == -ENOTDIR) {
        add_diag(w->rd, v->line, v->col,
                 "'dropin' must be in /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, "
                 "/usr/lib/sysctl.d or /lib/sysctl.d (nothing else is read at boot), not '%s'",
                 path);
    } else if (r < 0) {
        add_diag(w->rd, v->line, v->col,
                 "'dropin' must name a '.conf' file (systemd-sysctl and sysctl --system read "
                 "nothing else) of letters, digits, '.', '_' or '-', not '%s'",
                 path);
    } else {
        free(w->p->dropin);
        w->p->dropin = path;
        path = NULL;
    }
    free(path);
}

/* node_exporter's textfile collector reads only the "*.prom" files of its
 * directory, so any other name would never be scraped; the name also
 * leaves room for fsutil's temporary file beside it (PROFILE_TEXTFILE_*). */
static void parse_textfile(struct walk *w, const struct ynode *v)
{
    static const char key[] = "metrics.textfile";
    char *path = NULL;
    const char *name;
    size_t len;

    if (!parse_path(w, key, v, &path))
        return;
    name = strrchr(path, '/'); /* never NULL: parse_path() wants a leading '/' */
    name = name ? name + 1 : path;
    len = strlen(name);
    if (strlen(path) > PROFILE_TEXTFILE_MAX) {
        add_diag(w->rd, v->line, v->col, "'%s' must be at most %d bytes long, not %zu", key, PROFILE_TEXTFILE_MAX,
                 strlen(path));
    } else if (len <= 5 || len > PROFILE_TEXTFILE_NAME_MAX || strcmp(name + len - 5, ".prom") != 0 ||
               strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len ||
               name[0] == '.') {
        add_diag(w->rd, v->line, v->col,
                 "'%s' must name a '.prom' file (node_exporter's textfile collector reads nothing else): up to "
                 "%d letters, digits, '.', '_' or '-', the first not a '.'; not '%s'",
                 key, PROFILE_TEXTFILE_NAME_MAX, path);
    } else {
        free(w->p->metrics_textfile);
        w->p->metrics_textfile = path;
        path = NULL;
    }
    free(path);
}

/* The authority part ("host[:port]") of a URL after its scheme. A '@'
 * would make what looks like the host a user name (libcurl then connects
 * to what follows it), so user info is never accepted. */
static bool authority_ok(const char *authority, size_t len)
{
    return len > 0 && memchr(authority, '@', len) == NULL;
}

static void parse_url(struct walk *w, const struct ynode *v)
{
    static const char *const loopback[] = { "127.0.0.1", "localhost", "[::1]" };
    const char *u = v->value, *authority = NULL;
    size_t len = 0;
    bool ok = false;

    if (strncmp(u, "https://", 8) == 0) {
        authority = u + 8;
        len = strcspn(authority, "/?#");
        ok = authority_ok(authority, len);
    } else if (strncmp(u, "http://", 7) == 0) {
        /* Plain http would send the bearer token in clear: loopback only. */
        authority = u + 7;
        len = strcspn(authority, "/?#");
        for (size_t i = 0; !ok && i < sizeof(loopback) / sizeof(loopback[0]); i++) {
            size_t n = strlen(loopback[i]);
            ok = len >= n && strncmp(authority, loopback[i], n) == 0 &&
                 (len == n || (authority[n] == ':' && len > n + 1 &&
                               strspn(authority + n + 1, "0123456789") == len - n - 1));
        }
    }
    for (const unsigned char *s = (const unsigned char *)u; ok && *s; s++)
        ok = *s > ' ' && *s != 0x7f;
    if (!ok) {
        add_diag(w->rd, v->line, v->col,
                 "'report.url' must be an https:// URL without user info (plain http:// only "
                 "to 127.0.0.1, localhost or [::1]), not '%s'",
                 v->value);
        return;
    }
    free(w->p->report.url);
    w->p->report.url = strdup(v->value);
    if (!w->p->report.url)
        w->rd->oom = 1;
}

/* A mapping's keys: plain strings, each once, each known. Calls handle()
 * for each known key with its value. */
typedef void (*key_handler)(struct walk *w, const char *key, const struct ynode *v);

static void walk_mapping(struct walk *w, const char *where, const struct ynode *map,
                         const char *const *keys, size_t nkeys, key_handler handle)
{
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const struct ynode *k = map->kids[i], *v = map->kids[i + 1];
        bool known = false, dup = false;

        if (k->poisoned)
            continue;
        if (k->type != Y_SCALAR) {
            add_diag(w->rd, k->line, k->col, "a key must be a word, not %s", type_name(k));
            continue;
        }
        for (size_t j = 0; j < i; j += 2)
            if (map->kids[j]->type == Y_SCALAR && strcmp(map->kids[j]->value, k->value) == 0) {
                add_diag(w->rd, k->line, k->col, "duplicate key '%s%s%s' (first at line %u)",
                         where, *where ? "." : "", k->value, map->kids[j]->line);
                dup = true;
                break;
            }
        if (dup)
            continue;
        for (size_t j = 0; j < nkeys; j++)
            known = known || strcmp(keys[j], k->value) == 0;
        if (!known) {
            char allowed[160] = "";
            for (size_t j = 0; j < nkeys; j++) {
                size_t used = strlen(allowed);
                (void)snprintf(allowed + used, sizeof(allowed) - used, "%s%s", j ? ", " : "", keys[j]);
            }
            if (*where)
                add_diag(w->rd, k->line, k->col, "unknown key '%s' in '%s' (known: %s)", k->value,
                         where, allowed);
            else
                add_diag(w->rd, k->line, k->col, "unknown key '%s' (known: %s)", k->value, allowed);
            continue;
        }
        handle(w, k->value, v);
    }
}

static void handle_host(struct walk *w, const char *key, const struct ynode *v)
{
    int value;

    if (strcmp(key, "ram_tier") == 0) {
        value = w->p->ram_tier;
        parse_enum(w, "host.ram_tier", v, tier_names, 4, &value);
        w->p->ram_tier = (enum ram_tier)value;
    } else {
        value = w->p->workload;
        parse_enum(w, "host.workload", v, workload_names, 3, &value);
        w->p->workload = (enum workload)value;
    }
}

static void handle_limits(struct walk *w, const char *key, const struct ynode *v)
{
    if (strcmp(key, "shmmax") == 0) {
        parse_size_limit(w, "limits.shmmax", v, true, false, &w->p->shmmax);
    } else if (strcmp(key, "shmall") == 0) {
        parse_size_limit(w, "limits.shmall", v, false, true, &w->p->shmall);
    } else {
        uint64_t n;
        if (parse_integer(w, "limits.shmmni", v, 1, PROFILE_SHMMNI_MAX, " segments", &n)) {
            w->p->shmmni.set = true;
            w->p->shmmni.size = (struct size_value){ SIZE_BYTES, n };
            w->p->shmmni.mark = (struct profile_mark){ v->line, v->col };
        }
    }
}

static void handle_report(struct walk *w, const char *key, const struct ynode *v)
{
    struct profile_report *r = &w->p->report;
    char full[64];

    (void)snprintf(full, sizeof(full), "report.%s", key);
    if (strcmp(key, "url") == 0) {
        if (expect_scalar(w, full, v))
            parse_url(w, v);
    } else if (strcmp(key, "timeout") == 0) {
        uint64_t n;
        if (parse_integer(w, full, v, 1, 300, " seconds", &n))
            r->timeout_s = (unsigned)n;
    } else if (strcmp(key, "spool_max_events") == 0) {
        uint64_t n;
        if (parse_integer(w, full, v, 1, 100000, " events", &n))
            r->spool_max_events = (unsigned)n;
    } else if (strcmp(key, "splay") == 0) {
        uint64_t n;
        if (parse_integer(w, full, v, 0, 3600, " seconds", &n))
            r->splay_s = (unsigned)n;
    } else if (strcmp(key, "token_file") == 0) {
        parse_path(w, full, v, &r->token_file);
    } else if (strcmp(key, "ca_file") == 0) {
        parse_path(w, full, v, &r->ca_file);
    } else if (strcmp(key, "client_cert") == 0) {
        parse_path(w, full, v, &r->client_cert);
    } else if (strcmp(key, "client_key") == 0) {
        parse_path(w, full, v, &r->client_key);
    } else {
        parse_path(w, full, v, &r->spool_dir);
    }
}

/* A System V key as ipcs shows it (0x0052e2c1) or as /proc/sysvipc/shm does
 * (a signed decimal), never 0: IPC_PRIVATE is the key of every private
 * segment, so it cannot single one out. */
static bool parse_ipc_key(const char *text, uint32_t *ret, const char **ret_why)
{
    bool hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    bool negative = text[0] == '-';
    const char *digits = hex ? text + 2 : negative ? text + 1 : text;
    size_t n = strspn(digits, hex ? "0123456789abcdefABCDEF" : "0123456789");
    unsigned long long value;
    char *end;

    *ret_why = "not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1)";
    if (n == 0 || digits[n] != '\0' || n > (hex ? 8 : 10))
        return false;
    errno = 0;
    value = strtoull(digits, &end, hex ? 16 : 10);
    if (errno != 0 || *end != '\0')
        return false;
    if (negative ? value > UINT64_C(2147483648) : value > UINT32_MAX) {
        *ret_why = "out of range for a System V key (32 bits)";
        return false;
    }
    if (value == 0) {
        *ret_why = "key 0 is IPC_PRIVATE, shared by every private segment; it cannot mark one";
        return false;
    }
    *ret = negative ? (uint32_t)(UINT64_C(4294967296) - value) : (uint32_t)value;
    return true;
}

static void handle_segments(struct walk *w, const char *key, const struct ynode *v)
{
    struct profile *p = w->p;

    (void)key;
    if (v->poisoned)
        return;
    if (v->type != Y_SEQUENCE) {
        add_diag(w->rd, v->line, v->col,
                 "'segments.persistent_keys' must be a list of keys such as [0x0052e2c1], not %s",
                 type_name(v));
        return;
    }
    for (size_t i = 0; i < v->nkids; i++) {
        const struct ynode *item = v->kids[i];
        const char *why;
        uint32_t ipc_key;
        bool dup = false;

        if (!expect_scalar(w, "segments.persistent_keys[]", item))
            continue;
        if (!parse_ipc_key(item->value, &ipc_key, &why)) {
            add_diag(w->rd, item->line, item->col, "'segments.persistent_keys': %s: '%s'", why, item->value);
            continue;
        }
        for (size_t j = 0; j < p->npersistent_keys; j++)
            dup = dup || p->persistent_keys[j] == ipc_key;
        if (dup) {
            add_diag(w->rd, item->line, item->col, "'segments.persistent_keys': key 0x%08x is listed twice",
                     (unsigned)ipc_key);
            continue;
        }
        if (p->npersistent_keys == PROFILE_PERSISTENT_KEYS_MAX) {
            add_diag(w->rd, item->line, item->col, "'segments.persistent_keys': more than %d keys",
                     PROFILE_PERSISTENT_KEYS_MAX);
            return;
        }
        p->persistent_keys[p->npersistent_keys++] = ipc_key;
    }
}

bool profile_key_is_persistent(const struct profile *p, uint32_t key)
{
    for (size_t i = 0; i < p->npersistent_keys; i++)
        if (p->persistent_keys[i] == key)
            return true;
    return false;
}

/* ---- labels ------------------------------------------------------------ */

/* At most 40 bytes of s, for a message: cut on a character boundary and
 * with control characters (C0, DEL, C1) shown as '?', since a label can be
 * anything YAML escapes allow and messages go to a terminal. */
static void excerpt(const char *s, char out[48])
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), cut = n > 40 ? 40 : n;

    while (cut > 0 && cut < n && (u[cut] & 0xc0) == 0x80)
        cut--;
    for (size_t i = 0; i < cut; i++) {
        bool c1 = (u[i] == 0xc2 && i + 1 < n && u[i + 1] <= 0x9f) ||
                  (i > 0 && u[i - 1] == 0xc2 && u[i] >= 0x80 && u[i] <= 0x9f);
        out[i] = s[i];
        if (u[i] < 0x20 || u[i] == 0x7f || c1)
            out[i] = '?';
    }
    (void)snprintf(out + cut, 48 - cut, "%s", cut < n ? "..." : "");
}

/* Why name is not a label name (^[a-z][a-z0-9_.-]{0,62}$), or NULL. Names
 * are lowercase so that 'Role' and 'role' cannot be two labels that a
 * collector then merges or keeps apart depending on its own rules. */
static const char *label_name_problem(const char *name, char why[48])
{
    size_t n = strlen(name), ok;

    if (n == 0)
        return "it is empty";
    if (n > PROFILE_LABEL_NAME_MAX)
        return "it is longer than 63 characters";
    if (strpbrk(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        return "label names are lowercase";
    if (name[0] < 'a' || name[0] > 'z')
        return "it must start with a letter";
    ok = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_.-");
    if (ok == n)
        return NULL;
    if ((unsigned char)name[ok] > ' ' && (unsigned char)name[ok] < 0x7f)
        (void)snprintf(why, 48, "'%c' is not allowed", name[ok]);
    else if ((unsigned char)name[ok] == ' ')
        (void)snprintf(why, 48, "a space is not allowed");
    else
        (void)snprintf(why, 48, "%s is not allowed",
                       (unsigned char)name[ok] < 0x80 ? "a control character" : "a non-ASCII character");
    return why;
}

/* The name of the label at kids[i] of map: a plain word, once, valid. */
static bool label_name_ok(struct walk *w, const struct ynode *map, size_t i)
{
    const struct ynode *k = map->kids[i];
    const char *why;
    char shown[48], buf[48];

    if (k->poisoned)
        return false;
    if (k->type != Y_SCALAR) {
        add_diag(w->rd, k->line, k->col, "a label name must be a word, not %s", type_name(k));
        return false;
    }
    excerpt(k->value, shown);
    for (size_t j = 0; j < i; j += 2)
        if (map->kids[j]->type == Y_SCALAR && strcmp(map->kids[j]->value, k->value) == 0) {
            add_diag(w->rd, k->line, k->col, "duplicate key 'labels.%s' (first at line %u)", shown,
                     map->kids[j]->line);
            return false;
        }
    why = label_name_problem(k->value, buf);
    if (why)
        add_diag(w->rd, k->line, k->col,
                 "label name '%s' is not valid: %s (a lowercase letter, then up to 62 lowercase "
                 "letters, digits, '_', '.' or '-')",
                 shown, why);
    return why == NULL;
}

/* The first control character (C0, DEL or C1) in s as a code point, 0 when
 * there is none, -1 when s is not UTF-8 (libyaml never produces that; a
 * report must never carry it, so it is checked here too). */
static long first_control(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t left = strlen(s);

    while (left > 0) {
        size_t n = utf8_sequence_length(u, left);
        if (n == 0)
            return -1;
        if (n == 1 && (u[0] < 0x20 || u[0] == 0x7f))
            return u[0];
        if (n == 2 && u[0] == 0xc2 && u[1] <= 0x9f)
            return u[1];
        u += n;
        left -= n;
    }
    return 0;
}

/* A label value is any scalar, taken as its text: an operator who writes
 * `rack: 12` or `pci: yes` means those characters. YAML's null is the
 * exception: `role:` or `role: ~` is a forgotten value, not the text "~". */
static bool label_value_ok(struct walk *w, const char *name, const struct ynode *v)
{
    static const char *const nulls[] = { "~", "null", "Null", "NULL" };
    char shown[48];
    long control;

    if (v->poisoned)
        return false;
    excerpt(name, shown);
    if (v->type != Y_SCALAR) {
        add_diag(w->rd, v->line, v->col, "'labels.%s' must be a string, not %s", shown, type_name(v));
        return false;
    }
    if (v->plain && v->value[0] == '\0') {
        add_diag(w->rd, v->line, v->col, "'labels.%s' has no value; write '' for an empty one", shown);
        return false;
    }
    for (size_t i = 0; v->plain && i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(v->value, nulls[i]) == 0) {
            add_diag(w->rd, v->line, v->col,
                     "'labels.%s' must be a string, not YAML null ('%s'); quote it to mean the text", shown,
                     v->value);
            return false;
        }
    if (strlen(v->value) > PROFILE_LABEL_VALUE_MAX) {
        add_diag(w->rd, v->line, v->col, "'labels.%s' is %zu bytes long; a label value is at most %d bytes",
                 shown, strlen(v->value), PROFILE_LABEL_VALUE_MAX);
        return false;
    }
    control = first_control(v->value);
    if (control < 0)
        add_diag(w->rd, v->line, v->col, "'labels.%s' is not valid UTF-8", shown);
    else if (control > 0)
        add_diag(w->rd, v->line, v->col, "'labels.%s' must not contain control characters (U+%04lX)", shown,
                 control);
    return control == 0;
}

static void parse_labels(struct walk *w, const struct ynode *v)
{
    struct profile *p = w->p;

    if (v->poisoned)
        return;
    if (v->type != Y_MAPPING) {
        add_diag(w->rd, v->line, v->col, "'labels' must be a mapping of names to values (role: database), not %s",
                 type_name(v));
        return;
    }
    for (size_t i = 0; i + 1 < v->nkids; i += 2) {
        const struct ynode *k = v->kids[i], *value = v->kids[i + 1];
        bool name_ok, value_ok;

        if (i / 2 == PROFILE_LABELS_MAX)
            add_diag(w->rd, k->line, k->col, "'labels' has %zu entries; at most %d are allowed", v->nkids / 2,
                     PROFILE_LABELS_MAX);
        if (k->poisoned)
            continue; /* already reported (alias, anchor, tag) */
        name_ok = label_name_ok(w, v, i);
        /* Checked even under a bad name: every error of a file at once. */
        value_ok = label_value_ok(w, k->type == Y_SCALAR ? k->value : "?", value);
        if (!name_ok || !value_ok || p->nlabels == PROFILE_LABELS_MAX)
            continue;
        memcpy(p->labels[p->nlabels].name, k->value, strlen(k->value) + 1);
        memcpy(p->labels[p->nlabels].value, value->value, strlen(value->value) + 1);
        p->labels[p->nlabels].mark = (struct profile_mark){ k->line, k->col };
        p->nlabels++;
    }
}

/* metrics has one key: textfile. */
static void handle_metrics(struct walk *w, const char *key, const struct ynode *v)
{
    (void)key;
    parse_textfile(w, v);
}

static const char *const top_keys[] = { "version", "host", "policy", "limits", "dropin", "conflicts", "report",
                                        "segments", "labels", "metrics" };
static const char *const metrics_keys[] = { "textfile" };
static const char *const segments_keys[] = { "persistent_keys" };
static const char *const conflicts_names[] = { "refuse", "warn" };
static const char *const host_keys[] = { "ram_tier", "workload" };
static const char *const limits_keys[] = { "shmmax", "shmall", "shmmni" };
static const char *const report_keys[] = { "url", "token_file", "ca_file", "client_cert",
                                           "client_key", "timeout", "splay", "spool_dir",
                                           "spool_max_events" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void handle_top(struct walk *w, const char *key, const struct ynode *v)
{
    if (strcmp(key, "version") == 0) {
        uint64_t version;
        if (parse_integer(w, "version", v, 0, UINT64_MAX, "", &version) && version != 1)
            add_diag(w->rd, v->line, v->col,
                     "'version' must be 1 (the profile format this shmprov reads), not %llu",
                     (unsigned long long)version);
    } else if (strcmp(key, "host") == 0) {
        if (expect_mapping(w, "host", v))
            walk_mapping(w, "host", v, host_keys, COUNT(host_keys), handle_host);
    } else if (strcmp(key, "policy") == 0) {
        int value = w->p->policy;
        parse_enum(w, "policy", v, policy_names, 2, &value);
        w->p->policy = (enum policy)value;
    } else if (strcmp(key, "limits") == 0) {
        if (expect_mapping(w, "limits", v))
            walk_mapping(w, "limits", v, limits_keys, COUNT(limits_keys), handle_limits);
    } else if (strcmp(key, "dropin") == 0) {
        parse_dropin(w, v);
    } else if (strcmp(key, "conflicts") == 0) {
        int value = w->p->conflicts_warn_only;
        parse_enum(w, "conflicts", v, conflicts_names, 2, &value);
        w->p->conflicts_warn_only = value == 1;
    } else if (strcmp(key, "segments") == 0) {
        if (expect_mapping(w, "segments", v))
            walk_mapping(w, "segments", v, segments_keys, COUNT(segments_keys), handle_segments);
    } else if (strcmp(key, "labels") == 0) {
        parse_labels(w, v);
    } else if (strcmp(key, "metrics") == 0) {
        if (expect_mapping(w, "metrics", v))
            walk_mapping(w, "metrics", v, metrics_keys, COUNT(metrics_keys), handle_metrics);
    } else {
        if (expect_mapping(w, "report", v))
            walk_mapping(w, "report", v, report_keys, COUNT(report_keys), handle_report);
    }
}

static void check_root(struct walk *w, const struct ynode *root)
{
    bool has_version = false;

    if (root->type != Y_MAPPING) {
        add_diag(w->rd, root->line, root->col,
                 "a profile must be a mapping of keys (version, host, policy, ...), not %s",
                 type_name(root));
        return;
    }
    for (size_t i = 0; i + 1 < root->nkids; i += 2)
        if (root->kids[i]->type == Y_SCALAR && strcmp(root->kids[i]->value, "version") == 0)
            has_version = true;
    if (!has_version)
        add_diag(w->rd, root->line, root->col, "missing required key 'version' (write 'version: 1')");
    walk_mapping(w, "", root, top_keys, COUNT(top_keys), handle_top);
}

/* Structural problems are found while reading, the rest while walking:
 * report them in file order, as a compiler would. Stable, and at most
 * MAX_DIAGS items, so insertion sort. */
static void sort_diags(struct profile_diags *d, size_t from)
{
    for (size_t i = from + 1; i < d->count; i++) {
        struct profile_diag item = d->items[i];
        size_t j = i;
        while (j > from && (d->items[j - 1].line > item.line ||
                            (d->items[j - 1].line == item.line && d->items[j - 1].col > item.col))) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = item;
    }
}

/* ---- entry points ------------------------------------------------------ */

void profile_free(struct profile *p)
{
    if (!p)
        return;
    free(p->path);
    free(p->canonical_path);
    free(p->dropin);
    free(p->report.url);
    free(p->report.token_file);
    free(p->report.ca_file);
    free(p->report.client_cert);
    free(p->report.client_key);
    free(p->report.spool_dir);
    free(p->metrics_textfile);
    free(p);
}

static struct profile *profile_new(const char *file)
{
    struct profile *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->path = strdup(file);
    p->canonical_path = strdup(file);
    p->dropin = strdup(PROFILE_DEFAULT_DROPIN);
    p->report.timeout_s = 20;
    p->report.spool_max_events = 1000;
    p->report.spool_dir = strdup("/var/lib/shmprov/spool");
    if (!p->path || !p->canonical_path || !p->dropin || !p->report.spool_dir) {
        profile_free(p);
        return NULL;
    }
    return p;
}

int profile_parse(const char *buf, size_t len, const char *file, struct profile_diags *diags,
                  struct profile **ret)
{
    struct reader rd = { .diags = diags };
    struct profile *p = NULL;
    struct ynode *root = NULL;
    size_t before = diags->count;
    int r;

    if (!yaml_parser_initialize(&rd.parser))
        return -ENOMEM;
    if (len > PROFILE_MAX_BYTES) {
        add_diag(&rd, 1, 1, "file is larger than %zu bytes (1 MiB); a profile is a few lines",
                 PROFILE_MAX_BYTES);
        r = -EINVAL;
        goto out;
    }
    if (check_encoding(&rd, buf, len) < 0) {
        r = -EINVAL;
        goto out;
    }
    /* Editors on some systems start UTF-8 files with a byte-order mark;
     * skip it rather than let it shift every column of the first line. */
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        rd.buf = buf + 3;
        rd.len = len - 3;
    } else {
        rd.buf = buf;
        rd.len = len;
    }
    yaml_parser_set_input_string(&rd.parser, (const unsigned char *)rd.buf, rd.len);
    yaml_parser_set_encoding(&rd.parser, YAML_UTF8_ENCODING);

    p = profile_new(file);
    if (!p) {
        r = -ENOMEM;
        goto out;
    }
    hash_sha256_hex(buf, len, p->sha256_hex);

    root = read_document(&rd);
    if (root)
        check_root(&(struct walk){ &rd, p }, root);
    if (rd.oom) {
        r = -ENOMEM;
        goto out;
    }
    if (!root || diags->count > before) {
        sort_diags(diags, before);
        r = -EINVAL;
        goto out;
    }
    *ret = p;
    p = NULL;
    r = 0;
out:
    ynode_free(root);
    profile_free(p);
    yaml_parser_delete(&rd.parser);
    return r;
}

int profile_load(const char *path, struct profile_diags *diags, struct profile **ret)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int r;

    r = fsutil_read_file(path, PROFILE_MAX_BYTES, false, &buf, &len, &st);
    if (r == -EFBIG)
        return profile_diags_add(diags, 1, 1, "file is larger than %zu bytes (1 MiB); a profile is a few lines",
                                 PROFILE_MAX_BYTES) < 0 ? -ENOMEM : -EINVAL;
    if (r < 0)
        return r;

    /* As root, a profile someone else can edit would let them choose the
     * kernel's limits; refuse it, as ssh refuses a writable key file. Its
     * owner can always chmod it, so a read-only file of another user's is
     * refused too. */
    if (geteuid() == 0 && st.st_uid != 0) {
        r = profile_diags_add(diags, 1, 1,
                              "profile is owned by uid %u, not root (its owner can change it); refusing to use it "
                              "as root (chown root and chmod go-w)",
                              (unsigned)st.st_uid);
        free(buf);
        return r < 0 ? -ENOMEM : -EPERM;
    }
    if (geteuid() == 0 && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        r = profile_diags_add(diags, 1, 1,
                              "profile is writable by a user other than root (owner uid %u, mode %04o); "
                              "refusing to use it as root (chown root and chmod go-w)",
                              (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        free(buf);
        return r < 0 ? -ENOMEM : -EPERM;
    }
    r = profile_parse(buf, len, path, diags, ret);
    free(buf);
    if (r == 0) {
        /* The drop-in names its profile; the same file must give the same
         * bytes whatever directory apply was started from. */
        char *canonical = realpath(path, NULL);
        if (canonical) {
            free((*ret)->canonical_path);
            (*ret)->canonical_path = canonical;
        }
    }
    return r;
}

int profile_load_builtin(struct profile_diags *diags, struct profile **ret)
{
    struct profile *p = NULL;
    int r = profile_parse((const char *)shmprov_default_profile, shmprov_default_profile_len,
                          PROFILE_BUILTIN_NAME, diags, &p);
    if (r < 0)
        return r;
    p->builtin = true;
    *ret = p;
    return 0;
}

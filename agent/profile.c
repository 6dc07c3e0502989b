#include "profile.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "cleanup.h"
#include "fsutil.h"
#include "hash.h"
#include "jsonout.h"
#include "sysctld.h"
#include "testing.h"

#define MAX_DEPTH 8
#define MAX_DIAGS 100
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

extern const unsigned char shmprov_default_profile[];
extern const size_t shmprov_default_profile_len;

/* ---- names ------------------------------------------------------------ */

static const char *const tier_names[] = { "auto", "small", "medium", "large" };
static const char *const workload_names[] = { "general", "database", "bigdata" };
static const char *const policy_names[] = { "enforce", "raise-only" };
static const char *const conflicts_names[] = { "refuse", "warn" };

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

__attribute__((format(printf, 4, 0))) static int diags_vadd(struct profile_diags *d, unsigned line,
                                                            unsigned col, const char *fmt, va_list ap)
{
    struct profile_diag *items;
    char *msg;

    if (d->count >= MAX_DIAGS)
        return 0;
    items = realloc(d->items, (d->count + 1) * sizeof(*items)); /* a few, at most MAX_DIAGS */
    if (!items)
        return -ENOMEM;
    d->items = items;
    if (vasprintf(&msg, fmt, ap) < 0)
        return -ENOMEM;
    d->items[d->count++] = (struct profile_diag){ line ? line : 1, col ? col : 1, msg };
    return 0;
}

int profile_diags_add(struct profile_diags *d, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = diags_vadd(d, line, col, fmt, ap);
    va_end(ap);
    return r;
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

/* The same words from profile_parse() and profile_load(). */
static int diag_too_large(struct profile_diags *d)
{
    return profile_diags_add(d, 1, 1, "file is larger than %zu bytes (1 MiB); a profile is a few lines",
                             PROFILE_MAX_BYTES) < 0 ? -ENOMEM : -EINVAL;
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
    struct profile *p; /* what the schema walk fills in */
};

static unsigned mark_line(yaml_mark_t m) { return (unsigned)m.line + 1; }
static unsigned mark_col(yaml_mark_t m) { return (unsigned)m.column + 1; }

__attribute__((format(printf, 4, 5))) static void add_diag(struct reader *rd, unsigned line,
                                                           unsigned col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (diags_vadd(rd->diags, line, col, fmt, ap) < 0)
        rd->oom = 1;
    va_end(ap);
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

/* The next event's type (and start, into *mark), or -1 after a syntax error. */
static int skip_event(struct reader *rd, yaml_mark_t *mark)
{
    yaml_event_t ev;
    int type;

    if (next_event(rd, &ev) < 0)
        return -1;
    type = (int)ev.type;
    if (mark)
        *mark = ev.start_mark;
    yaml_event_delete(&ev);
    return type;
}

/* Whether the node ev starts has an anchor (&name) and a written tag (!tag);
 * a plain scalar carries a tag only when one was written. */
static void event_anchor_tag(const yaml_event_t *ev, bool *anchor, bool *tag)
{
    *anchor = *tag = false;
    if (ev->type == YAML_SCALAR_EVENT) {
        *anchor = ev->data.scalar.anchor;
        *tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        *anchor = ev->data.mapping_start.anchor;
        *tag = !ev->data.mapping_start.implicit && ev->data.mapping_start.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        *anchor = ev->data.sequence_start.anchor;
        *tag = !ev->data.sequence_start.implicit && ev->data.sequence_start.tag;
    }
}

/* Anchors, tags and aliases are refused, never expanded; the rest of the
 * file is still checked, and each kind is reported once (a billion-laughs
 * file has thousands). */
static void refuse_once(struct reader *rd, bool *seen, unsigned line, unsigned col, const char *what)
{
    if (*seen)
        return;
    *seen = true;
    add_diag(rd, line, col, "YAML %s are not allowed in a profile", what);
}

/* A scalar node's text; the node is freed (and NULL returned) on failure. */
static struct ynode *set_scalar(struct reader *rd, struct ynode *node, const char *value, size_t len)
{
    node->type = Y_SCALAR;
    node->value = strndup(value, len);
    if (node->value)
        return node;
    rd->oom = 1;
    ynode_free(node);
    return NULL;
}

/* The node *ev starts, without its children, or NULL after recording why. */
static struct ynode *start_node(struct reader *rd, const yaml_event_t *ev, unsigned depth)
{
    unsigned line = mark_line(ev->start_mark), col = mark_col(ev->start_mark);
    struct ynode *node;
    bool anchor, tag;

    event_anchor_tag(ev, &anchor, &tag);
    if (anchor)
        refuse_once(rd, &rd->seen_anchor, line, col, "anchors (&name)");
    if (tag)
        refuse_once(rd, &rd->seen_tag, line, col, "tags (!tag)");
    if (depth > MAX_DEPTH) {
        add_diag(rd, line, col, "nesting is deeper than %d levels", MAX_DEPTH);
        return NULL;
    }
    node = malloc(sizeof(*node));
    if (!node) {
        rd->oom = 1;
        return NULL;
    }
    *node = (struct ynode){ .line = line, .col = col, .poisoned = anchor || tag };
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        refuse_once(rd, &rd->seen_alias, line, col, "aliases (*name)");
        /* Stands in for the alias so its key is not also called missing. */
        node->poisoned = true;
        return set_scalar(rd, node, "", 0);
    case YAML_SCALAR_EVENT:
        node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (!memchr(ev->data.scalar.value, '\0', ev->data.scalar.length))
            return set_scalar(rd, node, (const char *)ev->data.scalar.value, ev->data.scalar.length);
        add_diag(rd, line, col, "NUL character in a value");
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        node->type = ev->type == YAML_MAPPING_START_EVENT ? Y_MAPPING : Y_SEQUENCE;
        return node;
    default:
        add_diag(rd, line, col, "unexpected YAML structure");
    }
    ynode_free(node);
    return NULL;
}

/* Builds the node that starts with *ev (consumed), with its children up to
 * its end event (libyaml nests them, so the next end event is its own).
 * Returns the node or NULL after recording why; on NULL the caller stops reading. */
static struct ynode *read_node(struct reader *rd, yaml_event_t *ev, unsigned depth)
{
    struct ynode *node = start_node(rd, ev, depth), *kid, **kids;
    yaml_event_t next;

    yaml_event_delete(ev);
    while (node && node->type != Y_SCALAR) {
        if (next_event(rd, &next) < 0)
            goto fail;
        if (next.type == YAML_MAPPING_END_EVENT || next.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&next);
            break;
        }
        kid = read_node(rd, &next, depth + 1);
        if (!kid)
            goto fail;
        kids = realloc(node->kids, (node->nkids + 1) * sizeof(struct ynode *));
        if (!kids) {
            rd->oom = 1;
            ynode_free(kid);
            goto fail;
        }
        node->kids = kids;
        node->kids[node->nkids++] = kid;
    }
    return node;
fail:
    ynode_free(node);
    return NULL;
}

/* Reads buf, exactly one document. Returns its root, or NULL (diagnostics
 * recorded; an empty stream is reported as such). */
static struct ynode *read_document(struct reader *rd, const char *buf, size_t len)
{
    /* Editors on some systems start UTF-8 files with a byte-order mark;
     * skip it rather than let it shift every column of the first line. */
    size_t bom = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    yaml_event_t ev;
    yaml_mark_t mark;
    struct ynode *root;
    int type;

    rd->buf = buf + bom;
    rd->len = len - bom;
    yaml_parser_set_input_string(&rd->parser, (const unsigned char *)rd->buf, rd->len);
    yaml_parser_set_encoding(&rd->parser, YAML_UTF8_ENCODING);
    if (skip_event(rd, NULL) < 0) /* STREAM-START */
        return NULL;
    type = skip_event(rd, NULL); /* DOCUMENT-START, or the end of an empty stream */
    if (type == YAML_STREAM_END_EVENT)
        add_diag(rd, 1, 1, "empty profile: expected a mapping starting with 'version: 1'");
    if (type != YAML_DOCUMENT_START_EVENT || next_event(rd, &ev) < 0)
        return NULL;
    root = read_node(rd, &ev, 0);
    if (!root || skip_event(rd, NULL) < 0) /* DOCUMENT-END */
        goto fail;
    type = skip_event(rd, &mark);
    if (type == YAML_STREAM_END_EVENT)
        return root;
    if (type >= 0)
        add_diag(rd, mark_line(mark), mark_col(mark),
                 "more than one YAML document; a profile is a single document");
fail:
    ynode_free(root);
    return NULL;
}

/* ---- encoding ----------------------------------------------------------
 * libyaml reports bad UTF-8 by byte offset only and silently accepts
 * UTF-16; checking first gives a line and column and one encoding. */

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
        n = jsonout_utf8_length(s + i, len - i);
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

/* ---- schema ------------------------------------------------------------
 * One row a key (rules[] below): "section.key", the parser of its value,
 * the field it fills and the bounds checked. A wrong value throws the whole
 * profile away, so a parser may write its field before it has checked everything. */

struct key_rule;
typedef bool (*key_parser)(struct reader *rd, const struct key_rule *k, const struct ynode *v);

struct key_rule {
    const char *key;
    key_parser parse;
    size_t offset;            /* of the field in struct profile */
    uint64_t min, max;        /* integers; enums: max is the number of names */
    const char *unit;         /* integers, and what a bare size counts */
    const char *const *names; /* enums */
    bool string;              /* a char * the profile owns */
};

static void *field(struct reader *rd, const struct key_rule *k) { return (char *)rd->p + k->offset; }

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

static bool expect_scalar(struct reader *rd, const char *key, const struct ynode *v)
{
    if (v->poisoned)
        return false;
    if (v->type == Y_SCALAR && !(v->plain && v->value[0] == '\0'))
        return true;
    add_diag(rd, v->line, v->col, "'%s' must be a value, not %s", key, type_name(v));
    return false;
}

/* Appends name to the list "a, b, c" in list[size]. */
static void append_name(char *list, size_t size, const char *name)
{
    size_t used = strlen(list);

    (void)snprintf(list + used, size - used, "%s%s", used ? ", " : "", name);
}

/* The profile's enums are unsigned ints, as C gives an enum without
 * negative values; the field gets the index of the name. */
_Static_assert(sizeof(enum ram_tier) == sizeof(unsigned) && sizeof(enum workload) == sizeof(unsigned) &&
                   sizeof(enum policy) == sizeof(unsigned),
               "enum fields are written as unsigned");

static bool parse_enum(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    char allowed[128] = "";

    if (!expect_scalar(rd, k->key, v))
        return false;
    for (size_t i = 0; i < k->max; i++) {
        if (strcmp(v->value, k->names[i]) == 0) {
            *(unsigned *)field(rd, k) = (unsigned)i;
            return true;
        }
    }
    for (size_t i = 0; i < k->max; i++)
        append_name(allowed, sizeof(allowed), k->names[i]);
    add_diag(rd, v->line, v->col, "'%s' must be one of %s, not '%s'", k->key, allowed, v->value);
    return false;
}

/* Integers must be written as YAML integers: a quoted "4096" is a string. */
static bool parse_integer(struct reader *rd, const struct key_rule *k, const struct ynode *v,
                          uint64_t *ret)
{
    const char *why;

    if (v->type != Y_SCALAR || (v->plain && v->value[0] == '\0')) {
        add_diag(rd, v->line, v->col, "'%s' must be an integer, not %s", k->key, type_name(v));
        return false;
    }
    if (!v->plain) {
        add_diag(rd, v->line, v->col, "'%s' must be an integer, not a quoted string", k->key);
        return false;
    }
    if (sizes_parse_uint(v->value, ret, &why) < 0) {
        add_diag(rd, v->line, v->col, "'%s': %s: '%s'", k->key, why, v->value);
        return false;
    }
    if (*ret < k->min || *ret > k->max) {
        add_diag(rd, v->line, v->col, "'%s' must be from %llu to %llu %s, not %llu", k->key,
                 (unsigned long long)k->min, (unsigned long long)k->max, k->unit,
                 (unsigned long long)*ret);
        return false;
    }
    return true;
}

static bool parse_uint(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    uint64_t n;

    if (!parse_integer(rd, k, v, &n))
        return false;
    *(unsigned *)field(rd, k) = (unsigned)n;
    return true;
}

static bool parse_version(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    uint64_t version;

    if (!parse_integer(rd, k, v, &version))
        return false;
    if (version != 1)
        add_diag(rd, v->line, v->col,
                 "'version' must be 1 (the profile format this shmprov reads), not %llu",
                 (unsigned long long)version);
    return version == 1;
}

/* limits.shmmni: a count of segments. */
static bool parse_count_limit(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    uint64_t n;

    if (!parse_integer(rd, k, v, &n))
        return false;
    *(struct profile_limit *)field(rd, k) =
        (struct profile_limit){ true, { SIZE_BYTES, n }, false, { v->line, v->col } };
    return true;
}

/* The kernel's own default (ULONG_MAX - 2^24) is the largest sensible limit. */
#define LIMIT_MAX UINT64_C(18446744073692774399)

/* limits.shmmax and limits.shmall: a size with a unit, or a bare integer
 * that counts k->unit ("bytes" or "pages"). Only a limit in bytes may be a
 * percentage of RAM. */
static bool parse_size_limit(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    bool pages = strcmp(k->unit, "pages") == 0, bare;
    struct size_value size;
    const char *why;

    if (!expect_scalar(rd, k->key, v))
        return false;
    if (sizes_parse(v->value, !pages, &size, &why) < 0) {
        add_diag(rd, v->line, v->col, "'%s': %s: '%s'", k->key, why, v->value);
        return false;
    }
    bare = size.kind == SIZE_BYTES && v->value[strspn(v->value, "0123456789")] == '\0';
    if (size.kind == SIZE_BYTES && (size.value == 0 || size.value > LIMIT_MAX)) {
        add_diag(rd, v->line, v->col, "'%s' must be from 1 to %llu %s, not %s", k->key,
                 (unsigned long long)LIMIT_MAX, bare ? k->unit : "bytes", v->value);
        return false;
    }
    *(struct profile_limit *)field(rd, k) =
        (struct profile_limit){ true, size, bare && pages, { v->line, v->col } };
    return true;
}

static bool has_space_or_control(const char *s)
{
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if (*u <= ' ' || *u == 0x7f)
            return true;
    return false;
}

/* Stores a copy of v's text in the string field of k. */
static bool take_string(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    char **slot = field(rd, k);

    free(*slot);
    *slot = strdup(v->value);
    if (!*slot)
        rd->oom = 1;
    return *slot != NULL;
}

/* Absolute, printable, no white space: these paths end up in messages, in
 * the drop-in header and in open() calls made as root. */
static bool parse_path(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    size_t len;

    if (!expect_scalar(rd, k->key, v))
        return false;
    len = strlen(v->value);
    if (v->value[0] != '/')
        add_diag(rd, v->line, v->col, "'%s' must be an absolute path, not '%s'", k->key, v->value);
    else if (has_space_or_control(v->value))
        add_diag(rd, v->line, v->col, "'%s' must not contain white space or control characters", k->key);
    else if (strstr(v->value, "/../") || (len >= 3 && strcmp(v->value + len - 3, "/..") == 0))
        add_diag(rd, v->line, v->col, "'%s' must not contain '..'", k->key);
    else
        return take_string(rd, k, v);
    return false;
}

/* Whether name is a file name of letters, digits, '.', '_' or '-' of at
 * most max bytes, not hidden, and more than suffix, which it ends in. */
static bool file_name_ok(const char *name, const char *suffix, size_t max)
{
    size_t len = strlen(name), n = strlen(suffix);

    return len > n && len <= max && strcmp(name + len - n, suffix) == 0 && name[0] != '.' &&
           strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

int profile_check_dropin_path(const char *path)
{
    const char *name = NULL;

    for (size_t i = 0; sysctld_dirs[i]; i++) {
        size_t n = strlen(sysctld_dirs[i]);

        if (strncmp(path, sysctld_dirs[i], n) == 0 && path[n] == '/')
            name = path + n + 1;
    }
    if (!name)
        return -ENOTDIR;
    return file_name_ok(name, ".conf", SIZE_MAX) ? 0 : -EINVAL;
}

static bool parse_dropin(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    int r;

    if (!parse_path(rd, k, v))
        return false;
    r = profile_check_dropin_path(v->value);
    if (r == -ENOTDIR)
        add_diag(rd, v->line, v->col,
                 "'dropin' must be in /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, "
                 "/usr/lib/sysctl.d or /lib/sysctl.d (nothing else is read at boot), not '%s'",
                 v->value);
    else if (r < 0)
        add_diag(rd, v->line, v->col,
                 "'dropin' must name a '.conf' file (systemd-sysctl and sysctl --system read "
                 "nothing else) of letters, digits, '.', '_' or '-', not '%s'",
                 v->value);
    return r == 0;
}

/* node_exporter's textfile collector reads only the "*.prom" files of its
 * directory, so any other name would never be scraped; the name also
 * leaves room for fsutil's temporary file beside it (PROFILE_TEXTFILE_*). */
static bool parse_textfile(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    if (!parse_path(rd, k, v))
        return false;
    if (strlen(v->value) > PROFILE_TEXTFILE_MAX)
        add_diag(rd, v->line, v->col, "'%s' must be at most %d bytes long, not %zu", k->key,
                 PROFILE_TEXTFILE_MAX, strlen(v->value));
    else if (!file_name_ok(strrchr(v->value, '/') + 1, ".prom", PROFILE_TEXTFILE_NAME_MAX))
        add_diag(rd, v->line, v->col,
                 "'%s' must name a '.prom' file (node_exporter's textfile collector reads nothing else): up to "
                 "%d letters, digits, '.', '_' or '-', the first not a '.'; not '%s'",
                 k->key, PROFILE_TEXTFILE_NAME_MAX, v->value);
    else
        return true;
    return false;
}

/* https:// to any host, plain http:// (which would send the bearer token
 * in clear) only to loopback, and never with user info: a '@' would make
 * what looks like the host a user name (libcurl then connects to what
 * follows it). */
static bool url_ok(const char *url)
{
    static const char *const loopback[] = { "127.0.0.1", "localhost", "[::1]" };
    bool https = strncmp(url, "https://", 8) == 0;
    const char *authority;
    size_t len;

    if ((!https && strncmp(url, "http://", 7) != 0) || has_space_or_control(url))
        return false;
    authority = url + (https ? 8 : 7);
    len = strcspn(authority, "/?#");
    if (https)
        return len > 0 && memchr(authority, '@', len) == NULL;
    for (size_t i = 0; i < COUNT(loopback); i++) {
        size_t n = strlen(loopback[i]);
        if (len >= n && strncmp(authority, loopback[i], n) == 0 &&
            (len == n || (authority[n] == ':' && len > n + 1 &&
                          strspn(authority + n + 1, "0123456789") == len - n - 1)))
            return true;
    }
    return false;
}

static bool parse_url(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    if (!expect_scalar(rd, k->key, v))
        return false;
    if (url_ok(v->value))
        return take_string(rd, k, v);
    add_diag(rd, v->line, v->col,
             "'report.url' must be an https:// URL without user info (plain http:// only "
             "to 127.0.0.1, localhost or [::1]), not '%s'",
             v->value);
    return false;
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

bool profile_key_is_persistent(const struct profile *p, uint32_t key)
{
    for (size_t i = 0; i < p->npersistent_keys; i++)
        if (p->persistent_keys[i] == key)
            return true;
    return false;
}

static bool parse_persistent_keys(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    struct profile *p = rd->p;

    (void)k;
    if (v->type != Y_SEQUENCE) {
        add_diag(rd, v->line, v->col,
                 "'segments.persistent_keys' must be a list of keys such as [0x0052e2c1], not %s",
                 type_name(v));
        return false;
    }
    for (size_t i = 0; i < v->nkids; i++) {
        const struct ynode *item = v->kids[i];
        const char *why;
        uint32_t key;

        if (!expect_scalar(rd, "segments.persistent_keys[]", item))
            continue;
        if (!parse_ipc_key(item->value, &key, &why)) {
            add_diag(rd, item->line, item->col, "'segments.persistent_keys': %s: '%s'", why, item->value);
        } else if (profile_key_is_persistent(p, key)) {
            add_diag(rd, item->line, item->col, "'segments.persistent_keys': key 0x%08x is listed twice",
                     (unsigned)key);
        } else if (p->npersistent_keys == PROFILE_PERSISTENT_KEYS_MAX) {
            add_diag(rd, item->line, item->col, "'segments.persistent_keys': more than %d keys",
                     PROFILE_PERSISTENT_KEYS_MAX);
            return false;
        } else {
            p->persistent_keys[p->npersistent_keys++] = key;
        }
    }
    return true;
}

/* The first key before kids[i] of map with the same text, or NULL. */
static const struct ynode *earlier_twin(const struct ynode *map, size_t i)
{
    for (size_t j = 0; j < i; j += 2)
        if (map->kids[j]->type == Y_SCALAR && strcmp(map->kids[j]->value, map->kids[i]->value) == 0)
            return map->kids[j];
    return NULL;
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

/* The name of the label at kids[i] of map: a plain word, once, and
 * ^[a-z][a-z0-9_.-]{0,62}$. Names are lowercase so that 'Role' and 'role'
 * cannot be two labels that a collector merges or keeps apart by its own rules. */
static bool label_name_ok(struct reader *rd, const struct ynode *map, size_t i)
{
    const struct ynode *k = map->kids[i], *twin;
    const char *why = NULL, *name = k->value;
    char shown[48], buf[48];
    unsigned char c;

    if (k->type != Y_SCALAR) {
        add_diag(rd, k->line, k->col, "a label name must be a word, not %s", type_name(k));
        return false;
    }
    excerpt(name, shown);
    if ((twin = earlier_twin(map, i))) {
        add_diag(rd, k->line, k->col, "duplicate key 'labels.%s' (first at line %u)", shown, twin->line);
        return false;
    }
    c = (unsigned char)name[strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_.-")];
    (void)snprintf(buf, sizeof(buf), "'%c' is not allowed", c);
    if (name[0] == '\0')
        why = "it is empty";
    else if (strlen(name) > PROFILE_LABEL_NAME_MAX)
        why = "it is longer than 63 characters";
    else if (strpbrk(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        why = "label names are lowercase";
    else if (name[0] < 'a' || name[0] > 'z')
        why = "it must start with a letter";
    else if (c == ' ')
        why = "a space is not allowed";
    else if (c && (c < 0x20 || c >= 0x7f))
        why = c < 0x80 ? "a control character is not allowed" : "a non-ASCII character is not allowed";
    else if (c)
        why = buf;
    if (why)
        add_diag(rd, k->line, k->col,
                 "label name '%s' is not valid: %s (a lowercase letter, then up to 62 lowercase "
                 "letters, digits, '_', '.' or '-')",
                 shown, why);
    return why == NULL;
}

/* The first control character (C0, DEL or C1) in s as a code point, or 0.
 * s is UTF-8: the file was checked, and libyaml refuses escapes of
 * surrogates or past U+10FFFF; so 0xc2 only ever leads a sequence. */
static unsigned first_control(const char *s)
{
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        if (*u < 0x20 || *u == 0x7f)
            return *u;
        if (*u == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f)
            return u[1];
    }
    return 0;
}

/* A label value is any scalar, taken as its text: an operator who writes
 * `rack: 12` or `pci: yes` means those characters. YAML's null is the
 * exception: `role:` or `role: ~` is a forgotten value, not the text "~". */
static bool label_value_ok(struct reader *rd, const char *name, const struct ynode *v)
{
    static const char *const nulls[] = { "~", "null", "Null", "NULL" };
    char shown[48];
    unsigned control;

    if (v->poisoned)
        return false;
    excerpt(name, shown);
    if (v->type != Y_SCALAR) {
        add_diag(rd, v->line, v->col, "'labels.%s' must be a string, not %s", shown, type_name(v));
        return false;
    }
    if (v->plain && v->value[0] == '\0') {
        add_diag(rd, v->line, v->col, "'labels.%s' has no value; write '' for an empty one", shown);
        return false;
    }
    for (size_t i = 0; v->plain && i < COUNT(nulls); i++)
        if (strcmp(v->value, nulls[i]) == 0) {
            add_diag(rd, v->line, v->col,
                     "'labels.%s' must be a string, not YAML null ('%s'); quote it to mean the text", shown,
                     v->value);
            return false;
        }
    if (strlen(v->value) > PROFILE_LABEL_VALUE_MAX) {
        add_diag(rd, v->line, v->col, "'labels.%s' is %zu bytes long; a label value is at most %d bytes",
                 shown, strlen(v->value), PROFILE_LABEL_VALUE_MAX);
        return false;
    }
    control = first_control(v->value);
    if (control)
        add_diag(rd, v->line, v->col, "'labels.%s' must not contain control characters (U+%04X)", shown,
                 control);
    return control == 0;
}

static bool parse_labels(struct reader *rd, const struct key_rule *rule, const struct ynode *v)
{
    struct profile *p = rd->p;

    (void)rule;
    if (v->type != Y_MAPPING) {
        add_diag(rd, v->line, v->col, "'labels' must be a mapping of names to values (role: database), not %s",
                 type_name(v));
        return false;
    }
    for (size_t i = 0; i + 1 < v->nkids; i += 2) {
        const struct ynode *k = v->kids[i], *value = v->kids[i + 1];
        bool name_ok, value_ok;

        if (i / 2 == PROFILE_LABELS_MAX)
            add_diag(rd, k->line, k->col, "'labels' has %zu entries; at most %d are allowed", v->nkids / 2,
                     PROFILE_LABELS_MAX);
        if (k->poisoned)
            continue; /* already reported (alias, anchor, tag) */
        name_ok = label_name_ok(rd, v, i);
        /* Checked even under a bad name: every error of a file at once. */
        value_ok = label_value_ok(rd, k->type == Y_SCALAR ? k->value : "?", value);
        if (!name_ok || !value_ok || p->nlabels == PROFILE_LABELS_MAX)
            continue;
        memcpy(p->labels[p->nlabels].name, k->value, strlen(k->value) + 1);
        memcpy(p->labels[p->nlabels].value, value->value, strlen(value->value) + 1);
        p->nlabels++;
    }
    return true;
}

/* ---- the keys ---------------------------------------------------------- */

static void walk_mapping(struct reader *rd, const char *where, const struct ynode *map);

static bool parse_section(struct reader *rd, const struct key_rule *k, const struct ynode *v)
{
    if (v->type != Y_MAPPING) {
        add_diag(rd, v->line, v->col, "'%s' must be a mapping, not %s", k->key, type_name(v));
        return false;
    }
    walk_mapping(rd, k->key, v);
    return true;
}

#define SECTION(name) { .key = (name), .parse = parse_section }
#define FIELD(f) .offset = offsetof(struct profile, f)
#define STRING(f) FIELD(f), .string = true
#define NAMES(a) .names = (a), .max = COUNT(a)
#define RANGE(lo, hi, in) .min = (lo), .max = (hi), .unit = (in)

/* Each section's keys in the order "known: ..." lists them. */
static const struct key_rule rules[] = {
    { "version", parse_version, RANGE(0, UINT64_MAX, "") },
    SECTION("host"),
    { "host.ram_tier", parse_enum, FIELD(ram_tier), NAMES(tier_names) },
    { "host.workload", parse_enum, FIELD(workload), NAMES(workload_names) },
    { "policy", parse_enum, FIELD(policy), NAMES(policy_names) },
    SECTION("limits"),
    { "limits.shmmax", parse_size_limit, FIELD(shmmax), .unit = "bytes" },
    { "limits.shmall", parse_size_limit, FIELD(shmall), .unit = "pages" },
    { "limits.shmmni", parse_count_limit, FIELD(shmmni), RANGE(1, PROFILE_SHMMNI_MAX, "segments") },
    { "dropin", parse_dropin, STRING(dropin) },
    { "conflicts", parse_enum, FIELD(conflicts_warn_only), NAMES(conflicts_names) },
    SECTION("report"),
    { "report.url", parse_url, STRING(report.url) },
    { "report.token_file", parse_path, STRING(report.token_file) },
    { "report.ca_file", parse_path, STRING(report.ca_file) },
    { "report.client_cert", parse_path, STRING(report.client_cert) },
    { "report.client_key", parse_path, STRING(report.client_key) },
    { "report.timeout", parse_uint, FIELD(report.timeout_s), RANGE(1, 300, "seconds") },
    { "report.splay", parse_uint, FIELD(report.splay_s), RANGE(0, 3600, "seconds") },
    { "report.spool_dir", parse_path, STRING(report.spool_dir) },
    { "report.spool_max_events", parse_uint, FIELD(report.spool_max_events), RANGE(1, 100000, "events") },
    SECTION("segments"),
    { "segments.persistent_keys", .parse = parse_persistent_keys },
    { "labels", .parse = parse_labels },
    SECTION("metrics"),
    { "metrics.textfile", parse_textfile, STRING(metrics_textfile) },
};

/* The name of rule's key in section where ("" for the top level), or NULL
 * when the key is in another section. */
static const char *key_in(const struct key_rule *rule, const char *where)
{
    size_t n = strlen(where);

    if (n == 0)
        return strchr(rule->key, '.') ? NULL : rule->key;
    return strncmp(rule->key, where, n) == 0 && rule->key[n] == '.' ? rule->key + n + 1 : NULL;
}

static const struct key_rule *find_rule(const char *where, const char *name)
{
    for (size_t i = 0; i < COUNT(rules); i++) {
        const char *in = key_in(&rules[i], where);
        if (in && strcmp(in, name) == 0)
            return &rules[i];
    }
    return NULL;
}

static void refuse_unknown_key(struct reader *rd, const char *where, const struct ynode *k)
{
    char known[160] = "";

    for (size_t i = 0; i < COUNT(rules); i++)
        if (key_in(&rules[i], where))
            append_name(known, sizeof(known), key_in(&rules[i], where));
    if (*where)
        add_diag(rd, k->line, k->col, "unknown key '%s' in '%s' (known: %s)", k->value, where, known);
    else
        add_diag(rd, k->line, k->col, "unknown key '%s' (known: %s)", k->value, known);
}

/* A mapping's keys: words, each once, each a key of section where; each
 * value goes to the parser of its key's rule, unless it was already refused
 * as an alias, anchor or tag. */
static void walk_mapping(struct reader *rd, const char *where, const struct ynode *map)
{
    for (size_t i = 0; i + 1 < map->nkids; i += 2) {
        const struct ynode *k = map->kids[i], *twin;
        const struct key_rule *rule;

        if (k->poisoned)
            continue; /* already reported (alias, anchor, tag) */
        if (k->type != Y_SCALAR)
            add_diag(rd, k->line, k->col, "a key must be a word, not %s", type_name(k));
        else if ((twin = earlier_twin(map, i)))
            add_diag(rd, k->line, k->col, "duplicate key '%s%s%s' (first at line %u)", where,
                     *where ? "." : "", k->value, twin->line);
        else if (!(rule = find_rule(where, k->value)))
            refuse_unknown_key(rd, where, k);
        else if (!map->kids[i + 1]->poisoned)
            (void)rule->parse(rd, rule, map->kids[i + 1]);
    }
}

static void check_root(struct reader *rd, const struct ynode *root)
{
    bool has_version = false;

    if (root->type != Y_MAPPING) {
        add_diag(rd, root->line, root->col,
                 "a profile must be a mapping of keys (version, host, policy, ...), not %s",
                 type_name(root));
        return;
    }
    for (size_t i = 0; i + 1 < root->nkids; i += 2)
        if (root->kids[i]->type == Y_SCALAR && strcmp(root->kids[i]->value, "version") == 0)
            has_version = true;
    if (!has_version)
        add_diag(rd, root->line, root->col, "missing required key 'version' (write 'version: 1')");
    walk_mapping(rd, "", root);
}

/* Structural problems are found while reading, the rest while walking:
 * report them in file order, as a compiler would (stable: insertion sort). */
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
    for (size_t i = 0; i < COUNT(rules); i++)
        if (rules[i].string)
            free(*(char **)((char *)p + rules[i].offset));
    free(p->path);
    free(p->canonical_path);
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
    struct ynode *root = NULL;
    size_t before = diags->count;
    int r = -ENOMEM;

    if (len > PROFILE_MAX_BYTES)
        return diag_too_large(diags);
    if (!yaml_parser_initialize(&rd.parser))
        return -ENOMEM;
    rd.p = profile_new(file);
    if (rd.p && check_encoding(&rd, buf, len) == 0) {
        hash_sha256_hex(buf, len, rd.p->sha256_hex);
        root = read_document(&rd, buf, len);
    }
    if (root)
        check_root(&rd, root);
    if (rd.p)
        r = rd.oom ? -ENOMEM : !root || diags->count > before ? -EINVAL : 0;
    if (r == -EINVAL)
        sort_diags(diags, before);
    if (r == 0) {
        *ret = rd.p;
        rd.p = NULL;
    }
    ynode_free(root);
    profile_free(rd.p);
    yaml_parser_delete(&rd.parser);
    return r;
}

/* As root, a profile someone else can edit would let them choose the
 * kernel's limits; refuse it, as ssh refuses a writable key file. Its
 * owner can always chmod it, so a read-only file of another user's is
 * refused too. Returns 0, -EPERM or -ENOMEM. */
static int check_owner(const struct stat *st, struct profile_diags *diags)
{
    int r = 0;

    if (geteuid() != 0)
        return 0;
    if (st->st_uid != 0)
        r = profile_diags_add(diags, 1, 1,
                              "profile is owned by uid %u, not root (its owner can change it); refusing to use it "
                              "as root (chown root and chmod go-w)",
                              (unsigned)st->st_uid);
    else if (st->st_mode & (S_IWGRP | S_IWOTH))
        r = profile_diags_add(diags, 1, 1,
                              "profile is writable by a user other than root (owner uid %u, mode %04o); "
                              "refusing to use it as root (chown root and chmod go-w)",
                              (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777));
    else
        return 0;
    return r < 0 ? -ENOMEM : -EPERM;
}

int profile_load(const char *path, struct profile_diags *diags, struct profile **ret)
{
    CLEANUP_FREE char *buf = NULL;
    struct stat st;
    size_t len = 0;
    char *canonical;
    int r;

    r = fsutil_read_file(path, PROFILE_MAX_BYTES, false, &buf, &len, &st);
    if (r == -EFBIG)
        return diag_too_large(diags);
    if (r == 0)
        r = check_owner(&st, diags);
    if (r == 0)
        r = profile_parse(buf, len, path, diags, ret);
    if (r < 0)
        return r;
    /* The drop-in names its profile; the same file must give the same
     * bytes whatever directory apply was started from. */
    canonical = realpath(path, NULL);
    if (canonical) {
        free((*ret)->canonical_path);
        (*ret)->canonical_path = canonical;
    }
    return 0;
}

int profile_load_builtin(struct profile_diags *diags, struct profile **ret)
{
    int r = profile_parse((const char *)shmprov_default_profile, shmprov_default_profile_len,
                          PROFILE_BUILTIN_NAME, diags, ret);
    if (r == 0)
        (*ret)->builtin = true;
    return r;
}

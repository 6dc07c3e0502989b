#include <limits.h>
#include <sys/stat.h>

#include "helpers.h"
#include "params.h"
#include "sysctld.h"

/* The expectations below are what systemd-sysctl 252 and procps-ng 4.0.2
 * actually did with the same input, run in private IPC and mount
 * namespaces; the integration tests keep comparing against the real tools. */

static const char *const keys[] = { "kernel.shmmax", "kernel.shmall", "kernel.shmmni" };
static const char *const short_names[] = { "max", "all", "mni" };

/* ---- sysctld_parse_text -------------------------------------------------
 * Every callback is recorded as text, "max@3=VALUE" for an assignment with
 * " glob", " exclude", " ignore", " inexact" (a non-glob name that is not
 * the canonical spelling) and " uncertain" as needed, and "W@3" for a warning. */

static void record_line(void *ctx, const struct sysctld_line *l)
{
    FILE *f = ctx;

    fprintf(f, "%s%s@%u%s%.*s%s%s%s%s", ftell(f) ? "; " : "", short_names[l->key_index], l->line,
            l->value ? "=" : " exclude", (int)l->value_len, l->value ? l->value : "", l->glob ? " glob" : "",
            l->ignore_failure ? " ignore" : "", !l->glob && !l->exact ? " inexact" : "",
            l->uncertain ? " uncertain" : "");
}

static void record_warning(void *ctx, unsigned line, const char *why)
{
    cr_assert(why && *why);
    fprintf(ctx, "%sW@%u", ftell(ctx) ? "; " : "", line);
}

#define NUL_TEXT "kernel.shmmax = 1\0junk\nkernel.shmall = 2\n"

struct parse_case {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen(text) */
    const char *systemd;
    const char *procps; /* NULL: as systemd */
};

static const struct parse_case parse_cases[] = {
    { "plain", "kernel.shmmax = 4294967296\n", 0, "max@1=4294967296", NULL },
    { "spacing", "kernel.shmmax=1\n  kernel.shmall   =   2  \n\tkernel.shmmni\t=\t3\t\n", 0,
      "max@1=1; all@2=2; mni@3=3", NULL },
    { "comments and blanks", "# kernel.shmmax = 1\n; kernel.shmmax = 2\n   # x\n\t;y\n\n   \n", 0, "", NULL },
    { "no final newline", "kernel.shmmax = 9", 0, "max@1=9", NULL },
    { "value with spaces", "kernel.shmmax = 1 2 3 \nkernel.shmall = a=b\n", 0, "max@1=1 2 3; all@2=a=b", NULL },
    { "trailing comment is part of the value", "kernel.shmmax = 1 # c\n", 0, "max@1=1 # c", NULL },
    { "last line wins order", "kernel.shmmax = 1\nkernel.shmmax = 2\n", 0, "max@1=1; max@2=2", NULL },
    /* procps does not strip space after the '-', so it names " kernel/shmall". */
    { "dash prefix", "-kernel.shmmax = 5\n- kernel.shmall = 6\n", 0,
      "max@1=5 ignore; all@2=6 ignore", "max@1=5 ignore" },
    /* systemd simplifies the path; procps opens it as written, where "//"
     * and a leading '/' still work but a trailing separator fails. */
    { "slash keys", "kernel/shmmax = 1\n/kernel/shmall = 2\nkernel//shmmni = 3\nkernel.shmmax. = 4\n",
      0, "max@1=1; all@2=2; mni@3=3; max@4=4",
      "max@1=1; all@2=2 inexact; mni@3=3 inexact" },
    { "doubled dot", "kernel..shmmax = 1\n", 0, "max@1=1", "max@1=1 inexact" },
    { "glob matching one key", "kernel.shmm?x = 8\n", 0, "max@1=8 glob", NULL },
    { "glob matching several", "kernel.shm* = 7\n", 0, "max@1=7 glob; all@1=7 glob; mni@1=7 glob", NULL },
    { "bracket glob", "kernel.shm[a]* = 9\n", 0, "all@1=9 glob", NULL },
    { "glob in the first component", "*.shmmax = 1\n", 0, "max@1=1 glob", NULL },
    /* glob(3) never lets '*' cross a '/'. */
    { "star does not cross a separator", "kernel* = 1\nk*max = 2\n", 0, "", NULL },
    { "exclusion", "-kernel.shmmax\n", 0, "max@1 exclude", NULL },
    { "glob exclusion", "-kernel.shmm?x\n", 0, "max@1 exclude glob", NULL },
    { "no equals sign", "kernel.shmmax\nkernel.shmall 5\n", 0, "W@1; W@2", NULL },
    { "crlf", "kernel.shmmax = 1\r\n\r\nkernel.shmall = 2\r\n", 0, "max@1=1; all@3=2", NULL },
    /* systemd ends a line at a lone '\r' or a NUL, procps keeps the '\r' in
     * the value and drops what follows a NUL; procps strips '\v' and '\f',
     * systemd does not. Not emulated: the pieces are read, uncertain, and so
     * is every later line (systemd numbers them differently). */
    { "lone cr", "kernel.shmmni = 2000\rkernel.shmall = 3000\r\n", 0,
      "mni@1=2000 uncertain; all@1=3000 uncertain", NULL },
    { "cr cr", "kernel.shmmax = 1\r\rkernel.shmall = 2", 0, "max@1=1 uncertain; all@1=2 uncertain", NULL },
    { "lf cr", "x\n\rkernel.shmmax = 1\n", 0, "W@1; max@2=1 uncertain", NULL },
    { "nul byte", NUL_TEXT, sizeof(NUL_TEXT) - 1, "max@1=1 uncertain; W@1; all@2=2 uncertain", NULL },
    { "empty value", "kernel.shmmax =\n", 0, "W@1; max@1=", NULL },
    { "vertical tab", "kernel.shmmax = 1\v\n", 0, "max@1=1 uncertain", NULL },
    { "other keys", "vm.swappiness = 10\nkernel.shmmax_x = 1\nkernel.shm = 1\nkernel.shmmaxx=1\n", 0, "", NULL },
    { "leading equals", "=kernel.shmmax=1\n", 0, "", NULL },
    { "dot-dot", "kernel/../kernel/shmmax = 1\n", 0, "W@1", NULL },
    { "empty text", "", 0, "", NULL },
};

static void run_parse_cases(enum sysctld_rules rules)
{
    for (size_t i = 0; i < ELEMENTSOF(parse_cases); i++) {
        const struct parse_case *c = &parse_cases[i];
        char *got = NULL;
        size_t got_len = 0;
        FILE *f = open_memstream(&got, &got_len);
        int ret = sysctld_parse_text(rules, c->text, c->len ? c->len : strlen(c->text), keys, 3, record_line,
                                     record_warning, f);

        cr_assert_eq(fclose(f), 0);
        cr_expect_eq(ret, 0, "%s: returned %d", c->name, ret);
        cr_expect_str_eq(got, rules == SYSCTLD_PROCPS && c->procps ? c->procps : c->systemd, "%s (%s)",
                         c->name, sysctld_rules_name(rules));
        free(got);
    }
}

Test(sysctld_parse, systemd_table) { run_parse_cases(SYSCTLD_SYSTEMD); }
Test(sysctld_parse, procps_table) { run_parse_cases(SYSCTLD_PROCPS); }

Test(sysctld_parse, arguments)
{
    static const char *const bad_keys[][1] = { { "kernel..shmmax" }, { "kernel//shmmax" }, { ".kernel" },
                                               { "kernel." }, { "kernel.shm*" }, { "" } };
    static const char *const slash_keys[] = { "kernel/shmmax" };
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);

    /* A managed key may be spelt with slashes too. */
    cr_assert_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, "kernel.shmmax = 1\n", 18, slash_keys, 1, record_line, NULL, f),
                 0);
    cr_assert_eq(fflush(f), 0);
    cr_expect_str_eq(got, "max@1=1");

    cr_expect_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, "x", 1, keys, 0, record_line, NULL, f), -EINVAL);
    cr_expect_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, "x", 1, keys, SYSCTLD_MAX_KEYS + 1, record_line, NULL, f),
                 -EINVAL);
    cr_expect_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, NULL, 1, keys, 3, record_line, NULL, f), -EINVAL);
    cr_expect_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, "x", 1, keys, 3, NULL, NULL, f), -EINVAL);
    cr_expect_eq(sysctld_parse_text((enum sysctld_rules)7, "x", 1, keys, 3, record_line, NULL, f), -EINVAL);
    for (size_t i = 0; i < ELEMENTSOF(bad_keys); i++)
        cr_expect_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, "x", 1, bad_keys[i], 1, record_line, NULL, f), -EINVAL,
                     "key '%s'", bad_keys[i][0]);
    cr_expect_eq(sysctld_parse_text(SYSCTLD_SYSTEMD, NULL, 0, keys, 3, record_line, NULL, f), 0);
    cr_assert_eq(fclose(f), 0);
    free(got);
}

/* ---- the analysis of trees built under a mkdtemp root --------------------
 * Never "/": nothing on the host is read, and no privileges are needed. */

static char root[64];
static char outside[64]; /* a host directory that is not inside root */

static void make_roots(void)
{
    snprintf(root, sizeof(root), "/tmp/shmprov-sysctld.XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(outside, sizeof(outside), "/tmp/shmprov-sysctld-outside.XXXXXX");
    cr_assert_not_null(mkdtemp(outside));
}

static void remove_roots(void)
{
    char cmd[160];

    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", root, outside);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(sysctld_tree, .init = make_roots, .fini = remove_roots, .timeout = 20);

/* root + rel, after creating rel's parent directories. */
static const char *at(const char *rel)
{
    static char path[2 * PATH_MAX];

    cr_assert_lt((size_t)snprintf(path, sizeof(path), "%s/%s", root, rel), sizeof(path));
    cr_assert_eq(fsutil_mkdir_parents(path), 0, "mkdir for %s", path);
    return path;
}

static void write_at(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void put_link(const char *rel, const char *target)
{
    cr_assert_eq(symlink(target, at(rel)), 0, "symlink %s: %s", rel, strerror(errno));
}

static struct sysctld_analysis *analyse_pending(enum sysctld_rules rules, const char *path, const char *text)
{
    struct sysctld_analysis *a = NULL;
    int r = sysctld_analyse_pending(root, rules, keys, 3, path, text, text ? strlen(text) : 0, &a);

    cr_assert_eq(r, 0, "sysctld_analyse_pending: %s", strerror(-r));
    cr_assert_not_null(a);
    return a;
}

static bool has_warning(const struct sysctld_analysis *a, const char *needle)
{
    for (size_t i = 0; i < a->nwarnings; i++)
        if (strstr(a->warnings[i], needle))
            return true;
    return false;
}

/* The analysis in one line: for each key that some line names, "max(TOTAL)
 * PATH:LINE=VALUE" (" glob", " ignore" when so) or "max(TOTAL) -" when
 * nothing is written to it; then " blocked" and " incomplete" when so. */
static void expect_described(const struct sysctld_analysis *a, const char *want, const char *name)
{
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);

    cr_assert_not_null(f);
    for (size_t k = 0; k < a->nkeys && k < ELEMENTSOF(short_names); k++) {
        const struct sysctld_key_report *r = &a->keys[k];
        const struct sysctld_assignment *w = &r->winner;

        if (r->total == 0 && !w->known)
            continue;
        fprintf(f, "%s%s(%zu) ", ftell(f) ? "; " : "", short_names[k], r->total);
        if (w->known)
            fprintf(f, "%s:%u=%s%s%s", w->path, w->line, w->value, w->glob ? " glob" : "",
                    w->ignore_failure ? " ignore" : "");
        else
            fputs("-", f);
    }
    fprintf(f, "%s%s", a->blocked ? " blocked" : "", a->incomplete ? " incomplete" : "");
    cr_assert_eq(fclose(f), 0);
    cr_expect_str_eq(got, want, "%s (%s)", name, sysctld_rules_name(a->rules));
    free(got);
    cr_expect_eq(a->nkeys, 3);
    cr_expect_str_eq(a->keys[0].key, "kernel.shmmax");
}

/* A tree to build: "REL=TEXT" a file, "REL->TARGET" a symbolic link,
 * "REL/" a directory, "REL|" a FIFO. */
static void build(const char *spec)
{
    const char *arrow = strstr(spec, "->"), *eq = strchr(spec, '=');
    size_t n = arrow ? (size_t)(arrow - spec) : eq ? (size_t)(eq - spec) : strlen(spec) - 1;
    char rel[PATH_MAX];

    cr_assert_lt(n, sizeof(rel));
    memcpy(rel, spec, n);
    rel[n] = '\0';
    if (arrow)
        put_link(rel, arrow + 2);
    else if (eq)
        put_file(root, rel, eq + 1);
    else if (spec[n] == '/')
        cr_assert_eq(mkdir(at(rel), 0755), 0);
    else
        cr_assert_eq(mkfifo(at(rel), 0644), 0);
}

struct tree_case {
    const char *name;
    const char *tree[6];
    const char *pending, *pending_text; /* pending NULL: the disk as it is */
    const char *systemd, *procps;       /* describe(); procps NULL: as systemd */
    const char *warnings[3];            /* in each analysis; "" alone: none at all */
};

#define OURS "/etc/sysctl.d/60-shmprov.conf"
#define OURS_TEXT "# Managed by shmprov.\nkernel.shmmax = 4294967296\nkernel.shmall = 1048576\n"

static const struct tree_case tree_cases[] = {
    { "empty root sets nothing", { NULL }, NULL, NULL, "", NULL, { "" } },
    { "later name wins across directories",
      { "usr/lib/sysctl.d/10-a.conf=kernel.shmmax = 1\n", "etc/sysctl.d/20-b.conf=# comment\nkernel.shmmax = 2\n",
        "usr/lib/sysctl.d/30-c.conf=kernel.shmmax = 3\nkernel.shmall = 30\n" }, NULL, NULL,
      "max(3) /usr/lib/sysctl.d/30-c.conf:1=3; all(1) /usr/lib/sysctl.d/30-c.conf:2=30", NULL, { NULL } },
    { "names sort with strcmp",
      { "etc/sysctl.d/9-b.conf=kernel.shmmax = 9\n", "etc/sysctl.d/10-a.conf=kernel.shmmax = 10\n",
        "etc/sysctl.d/a.conf=kernel.shmall = 1\n", "etc/sysctl.d/B.conf=kernel.shmall = 2\n" }, NULL, NULL,
      "max(2) /etc/sysctl.d/9-b.conf:1=9; all(2) /etc/sysctl.d/a.conf:1=1", NULL, { NULL } },
    { "/etc masks the same name in /usr/lib",
      { "usr/lib/sysctl.d/50-x.conf=kernel.shmmax = 5\n", "etc/sysctl.d/50-x.conf=kernel.shmall = 6\n" }, NULL,
      NULL, "all(1) /etc/sysctl.d/50-x.conf:1=6", NULL, { NULL } },
    { "/run masks /usr/lib, /usr/local/lib sits between",
      { "usr/lib/sysctl.d/50-x.conf=kernel.shmmax = 5\n", "usr/local/lib/sysctl.d/50-x.conf=kernel.shmmax = 51\n",
        "run/sysctl.d/50-x.conf=kernel.shmall = 52\n", "usr/local/lib/sysctl.d/60-y.conf=kernel.shmmni = 3100\n" },
      NULL, NULL, "all(1) /run/sysctl.d/50-x.conf:1=52; mni(1) /usr/local/lib/sysctl.d/60-y.conf:1=3100", NULL,
      { NULL } },
    { "a link to /dev/null masks, even without /dev in the image",
      { "usr/lib/sysctl.d/50-x.conf=kernel.shmmax = 5\n", "usr/lib/sysctl.d/60-y.conf=kernel.shmall = 6\n",
        "etc/sysctl.d/50-x.conf->/dev/null", "etc/sysctl.d/60-y.conf->../../dev/null" }, NULL, NULL, "", NULL,
      { "" } },
    { "an empty file masks", { "usr/lib/sysctl.d/50-x.conf=kernel.shmmax = 5\n", "etc/sysctl.d/50-x.conf=" },
      NULL, NULL, "", NULL, { NULL } },
    { "procps applies sysctl.conf last, systemd ignores it",
      { "etc/sysctl.conf=kernel.shmmax = 7000000\n", "etc/sysctl.d/99-zz.conf=kernel.shmmax = 7100000\n" }, NULL,
      NULL, "max(1) /etc/sysctl.d/99-zz.conf:1=7100000", "max(2) /etc/sysctl.conf:1=7000000", { NULL } },
    /* systemd reads sysctl.conf only through the link, named as the link;
     * procps reads it twice: through the link, then again last. */
    { "Debian's 99-sysctl.conf link",
      { "etc/sysctl.conf=# kernel.shmmax = 1\nkernel.shmmax = 7\n", "etc/sysctl.d/99-sysctl.conf->../sysctl.conf",
        "etc/sysctl.d/60-shmprov.conf=kernel.shmmax = 5\nkernel.shmall = 6\n" }, NULL, NULL,
      "max(2) /etc/sysctl.d/99-sysctl.conf:2=7; all(1) /etc/sysctl.d/60-shmprov.conf:2=6",
      "max(3) /etc/sysctl.conf:2=7; all(1) /etc/sysctl.d/60-shmprov.conf:2=6", { NULL } },
    { "a dangling link warns and still masks",
      { "usr/lib/sysctl.d/50-x.conf=kernel.shmmax = 8\n", "etc/sysctl.d/50-x.conf->/nonexistent/target.conf",
        "etc/sysctl.d/60-y.conf=kernel.shmmni = 3000\n" }, NULL, NULL, "mni(1) /etc/sysctl.d/60-y.conf:1=3000",
      NULL, { "/etc/sysctl.d/50-x.conf: dangling symbolic link" } },
    { "a directory named .conf warns and still masks",
      { "usr/lib/sysctl.d/50-x.conf=kernel.shmmax = 8\n", "etc/sysctl.d/50-x.conf/" }, NULL, NULL, "", NULL,
      { "/etc/sysctl.d/50-x.conf: is a directory" } },
    /* Both tools hang on it before applying anything: no winners. */
    { "a FIFO blocks the tools and is not opened",
      { "etc/sysctl.d/05-a.conf=kernel.shmmax = 9100000\n", "etc/sysctl.d/10-fifo.conf|",
        "etc/sysctl.d/20-b.conf=kernel.shmall = 9200\n" }, NULL, NULL, "max(1) -; all(1) - blocked", NULL,
      { "/etc/sysctl.d/10-fifo.conf: is a FIFO" } },
    { "a FIFO as sysctl.conf is skipped by procps",
      { "etc/sysctl.conf|", "etc/sysctl.d/10-a.conf=kernel.shmmax = 1\n" }, NULL, NULL,
      "max(1) /etc/sysctl.d/10-a.conf:1=1", NULL, { NULL } },
    { "a merged /lib link is read once", { "lib->usr/lib", "usr/lib/sysctl.d/50-a.conf=kernel.shmmax = 5\n" },
      NULL, NULL, "max(1) /usr/lib/sysctl.d/50-a.conf:1=5", NULL, { NULL } },
    /* Debian's systemd 252 is built without split-usr: no /lib/sysctl.d. */
    { "a separate /lib is read by procps only", { "lib/sysctl.d/70-old.conf=kernel.shmmax = 7\n" }, NULL, NULL,
      "", "max(1) /lib/sysctl.d/70-old.conf:1=7", { NULL } },
    { "a linked directory is named by its target under systemd",
      { "usr/lib/sysctl.d/50-a.conf=kernel.shmmax = 5\n", "usr/local/lib/sysctl.d->/usr/lib/sysctl.d" }, NULL,
      NULL, "max(1) /usr/lib/sysctl.d/50-a.conf:1=5", "max(1) /usr/local/lib/sysctl.d/50-a.conf:1=5", { NULL } },
    { "a link loop is a warning",
      { "etc/sysctl.d/10-a.conf->10-b.conf", "etc/sysctl.d/10-b.conf->10-a.conf" }, NULL, NULL, "", NULL,
      { "/etc/sysctl.d/10-a.conf: cannot be resolved" } },
    { "hidden files are read by procps only",
      { "etc/sysctl.d/.hidden.conf=kernel.shmmax = 1700000\n", "etc/sysctl.d/.conf=kernel.shmall = 1700\n" },
      NULL, NULL, "", "max(1) /etc/sysctl.d/.hidden.conf:1=1700000; all(1) /etc/sysctl.d/.conf:1=1700",
      { NULL } },
    { "other suffixes are not read",
      { "etc/sysctl.d/x.conf.bak=kernel.shmmax = 1\n", "etc/sysctl.d/x.CONF=kernel.shmmax = 2\n",
        "etc/sysctl.d/x.conf~=kernel.shmmax = 3\n", "etc/sysctl.d/60-shmprov.conf.tmp=kernel.shmmax = 4\n" },
      NULL, NULL, "", NULL, { NULL } },
    { "an explicit key beats a glob in either order",
      { "etc/sysctl.d/10-a.conf=kernel.shmmax = 1111111\nkernel.shmm?i = 5\n",
        "etc/sysctl.d/20-b.conf=kernel.shmm?x = 2222222\nkernel.shmmni = 4000\n" }, NULL, NULL,
      "max(2) /etc/sysctl.d/10-a.conf:1=1111111; mni(2) /etc/sysctl.d/20-b.conf:2=4000", NULL, { NULL } },
    { "a glob alone sets the key", { "etc/sysctl.d/10-a.conf=-kernel.shmm?x = 2100000\n" }, NULL, NULL,
      "max(1) /etc/sysctl.d/10-a.conf:1=2100000 glob ignore", NULL, { NULL } },
    { "systemd keeps a repeated glob where it first was",
      { "etc/sysctl.d/10-a.conf=kernel.shmm?x = 1000001\n", "etc/sysctl.d/20-b.conf=kernel.shm*x = 2000002\n",
        "etc/sysctl.d/30-c.conf=kernel.shmm?x = 1000001\n" }, NULL, NULL,
      "max(3) /etc/sysctl.d/20-b.conf:1=2000002 glob", "max(3) /etc/sysctl.d/30-c.conf:1=1000001 glob",
      { NULL } },
    { "an exclusion keeps globs off the key",
      { "etc/sysctl.d/10-a.conf=kernel.shm* = 3000\n", "etc/sysctl.d/20-b.conf=-kernel.shmmax\n" }, NULL, NULL,
      "max(2) -; all(1) /etc/sysctl.d/10-a.conf:1=3000 glob; mni(1) /etc/sysctl.d/10-a.conf:1=3000 glob", NULL,
      { NULL } },
    { "an exclusion after an assignment cancels it under systemd only",
      { "etc/sysctl.d/10-a.conf=kernel.shmmax = 1234567\n", "etc/sysctl.d/20-b.conf=-kernel.shmmax\n" }, NULL,
      NULL, "max(2) -", "max(2) /etc/sysctl.d/10-a.conf:1=1234567", { NULL } },
    { "a glob exclusion replaces the same glob under systemd only",
      { "etc/sysctl.d/10-a.conf=kernel.shmm?x = 4000000\n", "etc/sysctl.d/20-b.conf=-kernel.shmm?x\n" }, NULL,
      NULL, "max(2) -", "max(2) /etc/sysctl.d/10-a.conf:1=4000000 glob", { NULL } },
    { "an inexact spelling does not stop globs under procps",
      { "etc/sysctl.d/10-a.conf=kernel..shmmax = 3700000\nkernel.shmm?x = 3710000\n" }, NULL, NULL,
      "max(2) /etc/sysctl.d/10-a.conf:1=3700000", "max(2) /etc/sysctl.d/10-a.conf:2=3710000 glob", { NULL } },
    /* The tools read a lone CR differently: the keys of its line are not analysed. */
    { "CRLF and a lone CR",
      { "etc/sysctl.d/10-a.conf=kernel.shmmax = 1230000\r\nkernel.shmmni = 2000\rkernel.shmall = 3000\r\n" },
      NULL, NULL, "max(1) /etc/sysctl.d/10-a.conf:1=1230000; all(1) -; mni(1) - incomplete", NULL,
      { "/etc/sysctl.d/10-a.conf:2: kernel.shmmni: systemd-sysctl and sysctl --system read this line differently",
        "/etc/sysctl.d/10-a.conf:2: kernel.shmall: " } },
    { "lines without '=' and empty values warn",
      { "etc/sysctl.d/10-a.conf=kernel.shmmax\nkernel.shmall 5\nkernel.shmmni =\n" }, NULL, NULL,
      "mni(1) /etc/sysctl.d/10-a.conf:3=", NULL,
      { "/etc/sysctl.d/10-a.conf:1: not an assignment", "/etc/sysctl.d/10-a.conf:2: not an assignment",
        "/etc/sysctl.d/10-a.conf:3: empty value for kernel.shmmni" } },
    /* The drop-in as it will be: its new text counts, its old one does not. */
    { "pending text replaces the file on disk",
      { "etc/sysctl.d/60-shmprov.conf=kernel.shmmax = 1\nkernel.shmmni = 99\n" }, OURS, OURS_TEXT,
      "max(1) " OURS ":2=4294967296; all(1) " OURS ":3=1048576", NULL, { NULL } },
    { "a pending file in a directory not yet created", { "usr/lib/sysctl.d/10-vendor.conf=kernel.shmmax = 5\n" },
      OURS, OURS_TEXT, "max(2) " OURS ":2=4294967296; all(1) " OURS ":3=1048576", NULL, { NULL } },
    /* The later glob never beats an explicit line; the later shmall does. */
    { "a pending drop-in still loses to what wins at boot",
      { "etc/sysctl.d/99-zz.conf=kernel.shmall = 7\nkernel.shm*x = 8\n", "etc/sysctl.conf=kernel.shmmax = 9\n" },
      OURS, OURS_TEXT, "max(2) " OURS ":2=4294967296; all(2) /etc/sysctl.d/99-zz.conf:1=7",
      "max(3) /etc/sysctl.conf:1=9; all(2) /etc/sysctl.d/99-zz.conf:1=7", { NULL } },
    { "a pending drop-in cancelled by a later exclusion under systemd",
      { "etc/sysctl.d/99-zz.conf=-kernel.shmmax\n" }, OURS, OURS_TEXT,
      "max(2) -; all(1) " OURS ":3=1048576", "max(2) " OURS ":2=4294967296; all(1) " OURS ":3=1048576",
      { NULL } },
    { "a pending drop-in hidden by a same-named file read first",
      { "etc/sysctl.d/60-shmprov.conf->/dev/null" }, "/usr/local/lib/sysctl.d/60-shmprov.conf", OURS_TEXT, "",
      NULL, { NULL } },
    { "a pending drop-in outside the directories is never read", { NULL }, "/etc/shmprov/60-shmprov.conf",
      OURS_TEXT, "", NULL, { NULL } },
    { "a pending removal uncovers a same-named vendor file",
      { "etc/sysctl.d/60-shmprov.conf=" OURS_TEXT, "usr/lib/sysctl.d/60-shmprov.conf=kernel.shmmax = 5\n" }, OURS,
      NULL, "max(1) /usr/lib/sysctl.d/60-shmprov.conf:1=5", NULL, { NULL } },
    { "a pending sysctl.conf through Debian's link",
      { "etc/sysctl.conf=kernel.shmmax = 1\n", "etc/sysctl.d/99-sysctl.conf->../sysctl.conf" }, "/etc/sysctl.conf",
      "kernel.shmmax = 2\n", "max(1) /etc/sysctl.d/99-sysctl.conf:1=2", "max(2) /etc/sysctl.conf:1=2",
      { NULL } },
};

static void run_tree_case(const struct tree_case *c)
{
    remove_roots();
    make_roots();
    for (size_t i = 0; i < ELEMENTSOF(c->tree) && c->tree[i]; i++)
        build(c->tree[i]);
    for (int rules = 0; rules < SYSCTLD_RULE_SETS; rules++) {
        struct sysctld_analysis *a = analyse_pending((enum sysctld_rules)rules, c->pending, c->pending_text);
        const char *want = rules == SYSCTLD_PROCPS && c->procps ? c->procps : c->systemd;

        expect_described(a, want, c->name);
        if (c->warnings[0] && !c->warnings[0][0])
            cr_expect_eq(a->nwarnings, 0, "%s: %s", c->name, a->nwarnings ? a->warnings[0] : "");
        for (size_t i = 0; i < 3 && c->warnings[i] && c->warnings[i][0]; i++)
            cr_expect(has_warning(a, c->warnings[i]), "%s (%s): no warning '%s'", c->name,
                      sysctld_rules_name(a->rules), c->warnings[i]);
        sysctld_analysis_free(a);
    }
}

Test(sysctld_tree, table)
{
    for (size_t i = 0; i < ELEMENTSOF(tree_cases); i++)
        run_tree_case(&tree_cases[i]);
}

/* Runs body on the tree under both rules. */
#define BOTH(a, body)                                                                             \
    for (int rules_ = 0; rules_ < SYSCTLD_RULE_SETS; rules_++) {                                  \
        struct sysctld_analysis *a = analyse_pending((enum sysctld_rules)rules_, NULL, NULL);     \
        body;                                                                                     \
        sysctld_analysis_free(a);                                                                 \
    }

Test(sysctld_tree, absolute_symlinks_resolve_inside_root_never_on_the_host)
{
    char host_file[sizeof(outside) + 16], escape[sizeof(outside) + 64];

    put_file(root, "usr/lib/sysctl.d/other.txt", "kernel.shmall = 2600\n");
    put_link("etc/sysctl.d/60-x.conf", "/usr/lib/sysctl.d/other.txt");
    /* A file that exists on the host, outside root, under the same path. */
    snprintf(host_file, sizeof(host_file), "%s/host.conf", outside);
    write_at(host_file, "kernel.shmmax = 666\n", 20);
    put_link("etc/sysctl.d/70-y.conf", host_file);
    snprintf(escape, sizeof(escape), "../../../../../../../..%s", host_file);
    put_link("etc/sysctl.d/80-z.conf", escape);
    BOTH(a, {
        expect_described(a, "all(1) /etc/sysctl.d/60-x.conf:1=2600", "inside root");
        cr_expect(has_warning(a, "/etc/sysctl.d/70-y.conf: dangling symbolic link"));
        cr_expect(has_warning(a, "/etc/sysctl.d/80-z.conf: dangling symbolic link"));
    });
}

Test(sysctld_tree, nul_bytes_make_the_keys_after_them_uncertain)
{
    static const char text[] = "kernel.shmmax = 1900000\0garbage\nkernel.shmmni = 3000\n";

    write_at(at("etc/sysctl.d/10-a.conf"), text, sizeof(text) - 1);
    BOTH(a, {
        cr_expect(has_warning(a, "/etc/sysctl.d/10-a.conf: contains NUL bytes"));
        expect_described(a, "max(1) -; mni(1) - incomplete", "NUL");
        cr_expect(has_warning(a, "/etc/sysctl.d/10-a.conf:2: kernel.shmmni: systemd-sysctl and sysctl --system"));
    });
}

Test(sysctld_tree, file_over_one_mebibyte_is_not_analysed_and_warnings_are_capped)
{
    size_t len = SYSCTLD_FILE_MAX_BYTES + 1, n = 0;
    char *big = malloc(len), text[64 * 40];

    cr_assert_not_null(big);
    memset(big, '#', len);
    big[len - 1] = '\n';
    write_at(at("etc/sysctl.d/05-big.conf"), big, len);
    free(big);
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "no-equals-here\n");
    put_file(root, "etc/sysctl.d/10-a.conf", text);
    BOTH(a, {
        cr_expect(a->incomplete);
        cr_expect(has_warning(a, "/etc/sysctl.d/05-big.conf: larger than"));
        cr_expect_eq(a->nwarnings, SYSCTLD_MAX_WARNINGS);
        cr_expect_eq(a->dropped_warnings, 1 + 40 - SYSCTLD_MAX_WARNINGS);
        cr_expect(a->incomplete_why && strstr(a->incomplete_why, "05-big.conf: larger than"));
    });
}

/* A reason that comes after the warnings are full is not one of them: none
 * is named rather than a warning about something else. */
Test(sysctld_tree, an_incomplete_reason_past_the_warning_cap_is_not_misnamed)
{
    size_t len = SYSCTLD_FILE_MAX_BYTES + 1, n = 0;
    char *big = malloc(len), text[64 * 40];

    cr_assert_not_null(big);
    memset(big, '#', len);
    write_at(at("etc/sysctl.d/50-big.conf"), big, len);
    free(big);
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "no-equals-here\n");
    put_file(root, "etc/sysctl.d/10-a.conf", text);
    BOTH(a, {
        cr_expect(a->incomplete);
        cr_expect_null(a->incomplete_why);
    });
}

Test(sysctld_tree, counts_every_line_when_there_are_many_and_cuts_long_values)
{
    char name[64], text[256], want[256];

    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "etc/sysctl.d/%02d.conf", i);
        snprintf(text, sizeof(text), "kernel.shmmax = %d\n", 1000 + i);
        put_file(root, name, text);
    }
    snprintf(text, sizeof(text), "kernel.shmmax = %0100d\n", 7);
    put_file(root, "etc/sysctl.d/20.conf", text);
    /* Cut to SYSCTLD_VALUE_MAX - 1 bytes, "..." included. */
    snprintf(want, sizeof(want), "max(21) /etc/sysctl.d/20.conf:1=%0*d...", SYSCTLD_VALUE_MAX - 4, 0);
    BOTH(a, { expect_described(a, want, "many"); });
}

Test(sysctld_tree, root_with_trailing_slash_and_systemd_credential)
{
    char slashed[PATH_MAX + 2];
    struct sysctld_analysis *a = NULL;

    put_file(root, "etc/sysctl.d/10-a.conf", "kernel.shmmax = 1\n");
    put_file(root, "run/credentials/@system/sysctl.extra", "kernel.shmmax = 2\n");
    snprintf(slashed, sizeof(slashed), "%s/", root);
    cr_assert_eq(sysctld_analyse_pending(slashed, SYSCTLD_SYSTEMD, keys, 3, NULL, NULL, 0, &a), 0);
    expect_described(a, "max(1) /etc/sysctl.d/10-a.conf:1=1 incomplete", "trailing slash, credential");
    cr_expect(has_warning(a, "sysctl.extra"));
    sysctld_analysis_free(a);
}

Test(sysctld_tree, errors_leave_the_output_alone)
{
    static const char *const bad_key[] = { "kernel.shm*" };
    static struct sysctld_analysis sentinel;
    struct sysctld_analysis *a = &sentinel;
    char missing[PATH_MAX + 16];

    put_file(root, "file", "x");
    snprintf(missing, sizeof(missing), "%s/missing", root);
    cr_expect_eq(sysctld_analyse_pending("relative/root", SYSCTLD_SYSTEMD, keys, 3, NULL, NULL, 0, &a), -EINVAL);
    cr_expect_eq(sysctld_analyse_pending(missing, SYSCTLD_SYSTEMD, keys, 3, NULL, NULL, 0, &a), -ENOENT);
    cr_expect_eq(sysctld_analyse_pending(at("file"), SYSCTLD_SYSTEMD, keys, 3, NULL, NULL, 0, &a), -ENOTDIR);
    cr_expect_eq(sysctld_analyse_pending(root, SYSCTLD_SYSTEMD, bad_key, 1, NULL, NULL, 0, &a), -EINVAL);
    cr_expect_eq(sysctld_analyse_pending(root, SYSCTLD_SYSTEMD, keys, 0, NULL, NULL, 0, &a), -EINVAL);
    cr_expect_eq(sysctld_analyse_pending(root, (enum sysctld_rules)9, keys, 3, NULL, NULL, 0, &a), -EINVAL);
    /* A pending path must be absolute and name a file. */
    cr_expect_eq(sysctld_analyse_pending(root, SYSCTLD_SYSTEMD, keys, 3, "60-shmprov.conf", "", 0, &a), -EINVAL);
    cr_expect_eq(sysctld_analyse_pending(root, SYSCTLD_SYSTEMD, keys, 3, "/etc/sysctl.d/", "", 0, &a), -EINVAL);
    cr_expect_eq(a, &sentinel);
    sysctld_analysis_free(NULL);
}

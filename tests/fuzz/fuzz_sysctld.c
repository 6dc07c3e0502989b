/* The sysctl.d line parser under both tools' rules, and the conflict
 * analysis over it: the bytes are the text of shmprov's own drop-in in an
 * otherwise empty root, so every line the parser reports must come back,
 * in the analysis, as an assignment of that file. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sysctld.h"
#include "testing.h"

#define DROPIN "/etc/sysctl.d/60-shmprov.conf"

static const char *const keys[] = { "kernel.shmmax", "kernel.shmall", "kernel.shmmni" };
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static char root[] = "/tmp/shmprov-fuzz-sysctld.XXXXXX";

struct seen {
    const char *text;
    size_t len;
    unsigned lines; /* upper bound on line numbers: one per byte, plus one */
    size_t per_key[NKEYS];
};

static void on_line(void *ctx, const struct sysctld_line *l)
{
    struct seen *s = ctx;

    if (l->key_index >= NKEYS || l->line == 0 || l->line > s->lines || !l->name)
        abort();
    if (strnlen(l->name, 4096) >= 4096)
        abort();
    if (l->value) {
        /* Points into the text it was given. */
        if (l->value < s->text || l->value_len > s->len || (size_t)(l->value - s->text) > s->len - l->value_len)
            abort();
    } else if (l->value_len != 0) {
        abort();
    }
    s->per_key[l->key_index]++;
}

static void on_warning(void *ctx, unsigned line, const char *why)
{
    const struct seen *s = ctx;

    if (line == 0 || line > s->lines || !why || strnlen(why, 256) >= 256)
        abort();
}

static void check_string(const char *s, size_t size)
{
    if (strnlen(s, size) >= size)
        abort();
}

static void check_assignment(const struct sysctld_assignment *a)
{
    check_string(a->path, sizeof(a->path));
    check_string(a->value, sizeof(a->value));
    if (strcmp(a->path, DROPIN) != 0 || a->line == 0)
        abort();
    for (const char *p = a->value; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            abort();
}

static void analyse(enum sysctld_rules rules, const char *text, size_t len, const struct seen *s)
{
    struct sysctld_analysis *a = NULL;
    int r;

    r = sysctld_analyse_pending(root, rules, keys, NKEYS, DROPIN, text, len, &a);
    if (r == -ENOMEM)
        return;
    if (r != 0 || !a || a->nkeys != NKEYS || a->nwarnings > SYSCTLD_MAX_WARNINGS)
        abort();
    for (size_t i = 0; i < a->nwarnings; i++)
        check_string(a->warnings[i], SYSCTLD_WARNING_MAX);
    for (size_t k = 0; k < NKEYS; k++) {
        const struct sysctld_key_report *kr = &a->keys[k];

        check_string(kr->key, sizeof(kr->key));
        if (strcmp(kr->key, keys[k]) != 0 || kr->total != s->per_key[k] || (kr->winner.known && kr->total == 0))
            abort();
        if (kr->winner.known)
            check_assignment(&kr->winner);
    }
    sysctld_analysis_free(a);
}

static void remove_root(void)
{
    rmdir(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* An empty root: the drop-in is the only file either tool reads. */
    if (!mkdtemp(root))
        abort();
    atexit(remove_root);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum sysctld_rules all_rules[] = { SYSCTLD_SYSTEMD, SYSCTLD_PROCPS };
    const char *text = (const char *)data;

    for (size_t i = 0; i < sizeof(all_rules) / sizeof(all_rules[0]); i++) {
        struct seen s = { .text = text, .len = size, .lines = (unsigned)size + 1 };

        if (sysctld_parse_text(all_rules[i], text, size, keys, NKEYS, on_line, on_warning, &s) != 0)
            abort();
        analyse(all_rules[i], text, size, &s);
    }
    return 0;
}

#include "conflicts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jsonout.h"
#include "log.h"

static void add_warning(struct conflicts *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(struct conflicts *c, const char *fmt, ...)
{
    va_list ap;

    if (c->nwarnings >= CONFLICTS_MAX_WARNINGS)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(c->warnings[c->nwarnings], sizeof(c->warnings[0]), fmt, ap);
    va_end(ap);
    /* Both rule sets read mostly the same files: say each note once. */
    for (size_t i = 0; i < c->nwarnings; i++)
        if (strcmp(c->warnings[i], c->warnings[c->nwarnings]) == 0)
            return;
    c->nwarnings++;
}

static void add_conflict(struct conflicts *c, enum sizing_key_id key, const struct sysctld_analysis *a,
                         const struct sysctld_key_report *rep, const char *ours)
{
    const char *name = sizing_key_name(key), *tool = sysctld_rules_name(a->rules);
    const struct sysctld_assignment *w = &rep->winner;
    struct conflict *item = &c->items[c->count++];

    *item = (struct conflict){ .key = key, .rules = a->rules };
    if (a->blocked)
        (void)snprintf(item->text, sizeof(item->text),
                       "%s: %s would hang opening a file it cannot read (a FIFO, named in the warnings) and "
                       "set nothing at boot", name, tool);
    else if (a->incomplete)
        (void)snprintf(item->text, sizeof(item->text),
                       "%s: %s reads a file shmprov could not analyse (%s), so which file sets it at boot is "
                       "unknown", name, tool, a->incomplete_why ? a->incomplete_why : "named in the warnings");
    else if (!w->known)
        (void)snprintf(item->text, sizeof(item->text),
                       "%s: %s never reads %s at boot (a same-named file in a directory read first hides it), "
                       "so nothing sets it", name, tool, ours);
    else
        (void)snprintf(item->text, sizeof(item->text), "%s: %s:%u (%s%s = %s) is read after %s by %s at boot and wins",
                       name, w->path, w->line, w->glob ? "a pattern matching " : "", name, w->value, ours, tool);
    if (!a->blocked && !a->incomplete)
        item->winner = *w;
}

static void carry_warnings(struct conflicts *c, const struct sysctld_analysis *a)
{
    if (a->blocked)
        add_warning(c, "%s would hang on a file it cannot read (a FIFO?) and apply nothing at boot",
                    sysctld_rules_name(a->rules));
    if (a->incomplete)
        add_warning(c, "a file %s reads could not be analysed: the boot-order check may be wrong",
                    sysctld_rules_name(a->rules));
    /* A file may fail to read for one rule set only (an I/O error in
     * between): each set's notes are carried, repeats dropped. */
    for (size_t i = 0; i < a->nwarnings; i++)
        add_warning(c, "%s", a->warnings[i]);
}

/* as_written: the drop-in as apply is about to write it (its new text
 * counts, the file on disk does not); otherwise the disk as it is. */
static int check(const struct plan *plan, const char *root, bool as_written, struct conflicts *c)
{
    const char *ours = plan->profile->dropin, *keys[SIZING_KEY_COUNT];
    struct sysctld_analysis *both[SYSCTLD_RULE_SETS];
    int r;

    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        keys[id] = sizing_key_name((enum sizing_key_id)id);
    r = sysctld_analyse_both(root ? root : "/", keys, SIZING_KEY_COUNT, as_written ? ours : NULL,
                             as_written ? plan->dropin_new : NULL, as_written ? plan->dropin_new_len : 0, both);
    if (r < 0)
        return r; /* the caller treats *c as unknown */
    memset(c, 0, sizeof(*c));
    for (int rules = SYSCTLD_SYSTEMD; rules < SYSCTLD_RULE_SETS; rules++) {
        struct sysctld_analysis *a = both[rules];
        carry_warnings(c, a);
        c->uncertain[rules] = a->incomplete || a->blocked;
        for (int id = 0; id < SIZING_KEY_COUNT; id++) {
            const struct sizing_key *k = &plan->sizing.keys[id];
            const struct sysctld_key_report *rep = &a->keys[id];

            c->winners[id][rules] = rep->winner;
            /* Only keys the drop-in sets can be taken from it; a missing
             * drop-in is verify's own finding, not a conflict. */
            if (!k->managed || !k->persist || (!as_written && plan->dropin_read_errno != 0))
                continue;
            /* A file that could not be analysed may override the drop-in
             * (a huge file read in full by the tools): unknown is not safe. */
            if (!rep->winner.known || strcmp(rep->winner.path, ours) != 0 || a->incomplete || a->blocked)
                add_conflict(c, id, a, rep, ours);
        }
        sysctld_analysis_free(a);
    }
    return 0;
}

int conflicts_check(const struct plan *plan, const char *root, struct conflicts *ret)
{
    return check(plan, root, true, ret);
}

int conflicts_check_on_disk(const struct plan *plan, struct conflicts *ret)
{
    return check(plan, NULL, false, ret);
}

void conflicts_log(const struct conflicts *c, bool as_errors)
{
    for (size_t i = 0; i < c->nwarnings; i++)
        log_warn("%s", c->warnings[i]);
    for (size_t i = 0; i < c->count; i++)
        (as_errors ? log_error : log_warn)("%s", c->items[i].text);
}

json_object *conflicts_json(const struct conflicts *c)
{
    json_object *a = json_object_new_array();

    for (size_t i = 0; i < c->count; i++) {
        const struct conflict *item = &c->items[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "key", json_object_new_string(sizing_key_name(item->key)));
        json_object_object_add(o, "rules", json_object_new_string(sysctld_rules_name(item->rules)));
        json_object_object_add(o, "file", jsonout_string(item->winner.path));
        json_object_object_add(o, "line", json_object_new_int((int)item->winner.line));
        json_object_object_add(o, "value", item->winner.line ? jsonout_string(item->winner.value) : NULL);
        json_object_object_add(o, "message", jsonout_string(item->text));
        json_object_array_add(a, o);
    }
    return a;
}

json_object *conflicts_winner_json(const struct conflicts *c, enum sizing_key_id key)
{
    json_object *o = json_object_new_object();

    for (int rules = 0; rules < SYSCTLD_RULE_SETS; rules++) {
        const struct sysctld_assignment *w = &c->winners[key][rules];
        char text[SYSCTLD_PATH_MAX + 16]; /* a path (NUL included) and ":" and a 10-digit line */
        (void)snprintf(text, sizeof(text), "%s:%u", w->path, w->line);
        json_object_object_add(o, sysctld_rules_name(rules), w->known ? jsonout_string(text) : NULL);
    }
    return o;
}

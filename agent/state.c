#include "state.h"

#include <errno.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fsutil.h"
#include "lock.h"

#define STATE_MAX_BYTES ((size_t)64 * 1024)
#define STATE_LOCK_WAIT_MS 2000

/* dir's state file, with suffix: malloc'd, NULL without memory. */
static char *path_of(const char *dir, const char *suffix)
{
    char *path;

    return asprintf(&path, "%s/" STATE_FILE "%s", dir, suffix) < 0 ? NULL : path;
}

/* Values are decimal strings: shmall can exceed what a JSON number holds
 * exactly. */
static bool read_u64(json_object *o, const char *name, uint64_t *ret)
{
    json_object *v;
    const char *s;
    char *end;

    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return false;
    s = json_object_get_string(v);
    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    *ret = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0';
}

static void read_text(json_object *o, const char *name, char *buf, size_t len)
{
    json_object *v;

    if (json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string))
        (void)snprintf(buf, len, "%s", json_object_get_string(v));
}

/* The recorded apply's text fields, read and written alike. */
#define APPLY_TEXT(field) { #field, offsetof(struct state_apply, field), sizeof(((struct state_apply *)NULL)->field) }
static const struct {
    const char *name;
    size_t offset, size;
} apply_texts[] = { APPLY_TEXT(dropin_path), APPLY_TEXT(dropin_sha256), APPLY_TEXT(profile_sha256), APPLY_TEXT(time) };
#define APPLY_TEXTS (sizeof(apply_texts) / sizeof(apply_texts[0]))

static int parse_apply(json_object *o, struct state_apply *a)
{
    json_object *keys;

    if (!json_object_object_get_ex(o, "keys", &keys) || !json_object_is_type(keys, json_type_object))
        return -EBADMSG;
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        a->managed[id] = read_u64(keys, sizing_key_name(id), &a->value[id]);
    for (size_t i = 0; i < APPLY_TEXTS; i++)
        read_text(o, apply_texts[i].name, (char *)a + apply_texts[i].offset, apply_texts[i].size);
    a->known = a->dropin_path[0] != '\0';
    return a->known ? 0 : -EBADMSG;
}

/* The result words an apply or a remove can end with: the metrics carry
 * the word as a label value, so nothing else read from the file may
 * become one. */
static const char *const run_results[] = { "changed", "unchanged", "refused", "failed", "not-applicable", "removed" };

static bool result_known(const char *word)
{
    for (size_t i = 0; i < sizeof(run_results) / sizeof(run_results[0]); i++)
        if (strcmp(word, run_results[i]) == 0)
            return true;
    return false;
}

/* Leniently: a last run that cannot be read is only not known (the
 * metrics leave it out); the drift record and the sequence still count. */
static void parse_run(json_object *o, struct state_run *r)
{
    json_object *probe;

    if (!json_object_is_type(o, json_type_object))
        return;
    read_text(o, "result", r->result, sizeof(r->result));
    r->probe_passed = -1;
    if (json_object_object_get_ex(o, "probe_passed", &probe) && json_object_is_type(probe, json_type_boolean))
        r->probe_passed = json_object_get_boolean(probe) ? 1 : 0;
    r->known = result_known(r->result) && read_u64(o, "end", &r->end) && read_u64(o, "duration_ms", &r->duration_ms);
    if (!r->known)
        memset(r, 0, sizeof(*r));
}

static int parse(const char *text, size_t len, struct state *ret)
{
    json_object *doc = json_tokener_parse(text), *apply, *run;
    int r = 0;

    if (strlen(text) != len || !doc || !json_object_is_type(doc, json_type_object) ||
        !read_u64(doc, "sequence", &ret->sequence))
        r = -EBADMSG;
    else if (json_object_object_get_ex(doc, "last_apply", &apply) && !json_object_is_type(apply, json_type_null))
        r = parse_apply(apply, &ret->last_apply);
    if (r == 0 && json_object_object_get_ex(doc, "last_run", &run))
        parse_run(run, &ret->last_run);
    if (r == 0 && !read_u64(doc, "last_successful_apply_end", &ret->last_success_end))
        ret->last_success_end = 0;
    json_object_put(doc);
    return r;
}

int state_load(const char *dir, struct state *ret)
{
    CLEANUP_FREE char *path = path_of(dir, "");
    char *text = NULL;
    size_t len = 0;
    int r;

    memset(ret, 0, sizeof(*ret));
    if (!path)
        return -ENOMEM;
    r = fsutil_read_file(path, STATE_MAX_BYTES, true, &text, &len, NULL);
    if (r == -ENOENT)
        return 0;
    if (r == 0)
        r = parse(text, len, ret);
    free(text);
    if (r < 0)
        memset(ret, 0, sizeof(*ret));
    return r;
}

static void add_u64(json_object *o, const char *name, uint64_t v)
{
    char text[24];

    (void)snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
    json_object_object_add(o, name, json_object_new_string(text));
}

static json_object *apply_json(const struct state_apply *a)
{
    json_object *o = json_object_new_object(), *keys = json_object_new_object();

    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        if (a->managed[id])
            add_u64(keys, sizing_key_name(id), a->value[id]);
    json_object_object_add(o, "keys", keys);
    for (size_t i = 0; i < APPLY_TEXTS; i++)
        json_object_object_add(o, apply_texts[i].name, json_object_new_string((const char *)a + apply_texts[i].offset));
    return o;
}

static json_object *run_json(const struct state_run *r)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "result", json_object_new_string(r->result));
    add_u64(o, "end", r->end);
    add_u64(o, "duration_ms", r->duration_ms);
    json_object_object_add(o, "probe_passed", r->probe_passed < 0 ? NULL : json_object_new_boolean(r->probe_passed));
    return o;
}

static int save(const char *dir, const struct state *s)
{
    json_object *doc = json_object_new_object();
    CLEANUP_FREE char *path = path_of(dir, "");
    const char *text;
    int r;

    if (!path) {
        json_object_put(doc);
        return -ENOMEM;
    }
    json_object_object_add(doc, "version", json_object_new_int(1));
    add_u64(doc, "sequence", s->sequence);
    json_object_object_add(doc, "last_apply", s->last_apply.known ? apply_json(&s->last_apply) : NULL);
    json_object_object_add(doc, "last_run", s->last_run.known ? run_json(&s->last_run) : NULL);
    if (s->last_success_end)
        add_u64(doc, "last_successful_apply_end", s->last_success_end);
    text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
    /* A run killed while writing left its temporary: under the lock,
     * nobody else is writing one now. The directory is made only when it
     * is missing: every apply writes here, and most find it. */
    r = fsutil_remove_stale_temps(path, 0);
    r = r == -ENOENT ? fsutil_mkdir_parents(path) : 0;
    if (r >= 0)
        r = fsutil_write_atomic(path, text, strlen(text), 0644);
    json_object_put(doc);
    return r;
}

struct run_record {
    const struct state_run *run;
    const struct state_apply *apply; /* NULL: the run was not a successful apply */
    const char *removed_dropin;      /* a removal: forget the apply that left this drop-in */
};

/* Whether a and b record the same apply, whenever it was: an apply that
 * changes nothing keeps the record, and its time stays that of the apply
 * that set those values, which is what drift messages name. */
static bool same_apply(const struct state_apply *a, const struct state_apply *b)
{
    if (a->known != b->known || strcmp(a->dropin_path, b->dropin_path) != 0 ||
        strcmp(a->dropin_sha256, b->dropin_sha256) != 0 || strcmp(a->profile_sha256, b->profile_sha256) != 0)
        return false;
    for (int id = 0; id < SIZING_KEY_COUNT; id++)
        if (a->managed[id] != b->managed[id] || (a->managed[id] && a->value[id] != b->value[id]))
            return false;
    return true;
}

/* Every apply ends at its own time. The drift record keeps its time when
 * it records the same apply (same_apply()). */
static void set_run(struct state *s, const struct run_record *rec)
{
    s->last_run = *rec->run;
    s->last_run.known = true;
    if (rec->apply) {
        s->last_success_end = rec->run->end;
        if (!same_apply(&s->last_apply, rec->apply))
            s->last_apply = *rec->apply;
    }
    if (rec->removed_dropin && strcmp(s->last_apply.dropin_path, rec->removed_dropin) == 0)
        memset(&s->last_apply, 0, sizeof(s->last_apply));
}

/* Load, change, save under the lock: rec recorded, or (rec NULL) the
 * sequence counted up. A damaged file is kept for a person to look at, and
 * replaced. ret (may be NULL) gets the state as written. */
static int update(const char *dir, const struct run_record *rec, struct state *ret)
{
    struct state *s = calloc(1, sizeof(*s));
    struct lock *l = NULL;
    long holder = 0;
    int r;

    if (!s)
        return -ENOMEM;
    /* lock_acquire() makes the lock's directory, /run/shmprov. */
    r = lock_acquire(STATE_LOCK_PATH, STATE_LOCK_WAIT_MS, &l, &holder);
    if (r == 0)
        r = state_load(dir, s);
    if (r == -EBADMSG) {
        CLEANUP_FREE char *path = path_of(dir, ""), *aside = path_of(dir, ".damaged");

        if (path && aside)
            (void)rename(path, aside);
    }
    if (r == 0 || r == -EBADMSG) {
        if (rec)
            set_run(s, rec);
        else
            s->sequence++;
        r = save(dir, s);
    }
    lock_release(l);
    if (r == 0 && ret)
        *ret = *s;
    free(s);
    return r;
}

int state_record_run(const char *dir, const struct state_run *run, const struct state_apply *a, struct state *ret)
{
    struct run_record rec = { .run = run, .apply = a };

    return update(dir, &rec, ret);
}

int state_record_removal(const char *dir, const struct state_run *run, const char *dropin_path, struct state *ret)
{
    struct run_record rec = { .run = run, .removed_dropin = dropin_path };

    return update(dir, &rec, ret);
}

int state_next_sequence(const char *dir, uint64_t *ret)
{
    struct state *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return -ENOMEM;
    r = update(dir, NULL, s);
    *ret = r < 0 ? 0 : s->sequence;
    free(s);
    return r;
}

#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "identity.h"
#include "jsonobj.h"
#include "jsonout.h"
#include "log.h"
#include "state.h"
#include "version.h"

static json_object *step_json(const struct probe_step *s)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "status", json_object_new_string(probe_status_name(s->status)));
    json_object_object_add(o, "errno", s->err ? json_object_new_int(s->err) : NULL);
    json_object_object_add(o, "detail", jsonout_string(s->detail));
    return o;
}

/* A key's value when the run ended: read back after apply (or after its
 * rollback); the running value, untouched, when apply did not run. */
static void add_after(json_object *o, const struct sizing_key *k, const struct apply_outcome *out, int id)
{
    if (!out)
        jsonout_add_u64(o, "after", k->current_known, k->current);
    else
        jsonout_add_u64(o, "after", out->keys[id].after_known && !out->runtime_skipped, out->keys[id].after);
}

static json_object *keys_json(const struct report_run *run)
{
    json_object *a = json_object_new_array();

    for (int id = 0; run->plan && id < SIZING_KEY_COUNT; id++) {
        const struct sizing_key *k = &run->plan->sizing.keys[id];
        json_object *o;

        if (!k->managed)
            continue;
        o = jsonobj_key((enum sizing_key_id)id, k);
        add_after(o, k, run->out, id);
        json_object_object_add(o, "winning_file",
                               run->conflicts ? conflicts_winner_json(run->conflicts, (enum sizing_key_id)id) : NULL);
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *strings_json(const char (*items)[320], unsigned n)
{
    json_object *a = json_object_new_array();

    for (unsigned i = 0; i < n; i++)
        json_object_array_add(a, jsonout_string(items[i]));
    return a;
}

/* Test segments a killed shmprov left behind, removed before this run
 * planned (whether or not its own probe ran). */
static json_object *leftovers_json(const struct apply_outcome *out)
{
    json_object *a = json_object_new_array();

    for (int i = 0; out && i < out->probe_leftovers_found && i < PROBE_LEFTOVERS_MAX; i++) {
        const struct probe_leftover *l = &out->probe_leftovers[i];
        json_object *o;

        if (l->outcome != ORPHAN_REMOVED)
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int(l->seg.id));
        jsonout_add_u64(o, "bytes", true, l->seg.size);
        json_object_object_add(o, "creator_pid", json_object_new_int64(l->seg.cpid));
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *probe_json(const struct probe_result *p)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "passed", json_object_new_boolean(p->passed));
    json_object_object_add(o, "upper_bound", step_json(&p->upper_bound));
    json_object_object_add(o, "acceptance", step_json(&p->acceptance));
    json_object_object_add(o, "round_trip", step_json(&p->round_trip));
    jsonout_add_u64(o, "headroom_bytes", true, p->headroom_bytes);
    json_object_object_add(o, "key_note", p->key_note[0] ? jsonout_string(p->key_note) : NULL);
    return o;
}

/* Whether the drop-in is left changed: written, and not put back. */
static json_object *dropin_json(const struct report_run *run)
{
    const struct apply_outcome *out = run->out;
    json_object *o = json_object_new_object();

    json_object_object_add(o, "path", jsonout_string(out ? out->dropin_path
                                                   : run->plan ? run->plan->dropin_path : run->profile->dropin));
    json_object_object_add(o, "changed", json_object_new_boolean(out && out->dropin_written &&
                                                                 !(out->rollback_ran && out->dropin_restored)));
    /* A removal plan gives no content: null, as before a plan exists. */
    json_object_object_add(o, "sha256", run->plan && run->plan->dropin_new
                                            ? json_object_new_string(run->plan->dropin_new_sha256) : NULL);
    json_object_object_add(o, "sha256_on_disk", run->dropin_sha256_on_disk[0]
                                                    ? json_object_new_string(run->dropin_sha256_on_disk) : NULL);
    return o;
}

static json_object *error_json(const struct report_run *run)
{
    json_object *o;
    const char *code = run->error ? run->error->code : run->out ? run->out->error_code : NULL;

    if (!code)
        return NULL;
    o = json_object_new_object();
    json_object_object_add(o, "code", json_object_new_string(code));
    json_object_object_add(o, "message", jsonout_string(run->error ? run->error->message : run->out->error));
    json_object_object_add(o, "step", json_object_new_string(run->error ? run->error->step : run->out->error_step));
    return o;
}

static json_object *rollback_json(const struct apply_outcome *out)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "complete", json_object_new_boolean(!out->rollback_incomplete));
    json_object_object_add(o, "message", jsonout_string(out->restored));
    return o;
}

static json_object *drift_json(const struct report_drift_list *l)
{
    json_object *a = json_object_new_array();

    for (unsigned i = 0; l && i < l->count; i++) {
        const struct report_drift *d = &l->items[i];
        json_object *o = json_object_new_object();

        json_object_object_add(o, "kind", json_object_new_string(d->kind));
        json_object_object_add(o, "key", d->key ? json_object_new_string(d->key) : NULL);
        json_object_object_add(o, "file", d->file ? jsonout_string(d->file) : NULL);
        json_object_object_add(o, "expected", d->expected[0] ? json_object_new_string(d->expected) : NULL);
        json_object_object_add(o, "found", d->found[0] ? json_object_new_string(d->found) : NULL);
        json_object_object_add(o, "message", jsonout_string(d->message));
        json_object_array_add(a, o);
    }
    return a;
}

/* What the run knew about the host and who it is: the plan's facts, or
 * read now for a run that stopped before it had any. */
static void add_host(json_object *d, const struct report_run *run)
{
    const struct host_facts *h = run->host ? run->host : run->plan ? &run->plan->host : NULL;
    struct host_facts *read = NULL;
    struct host_identity id;

    if (!h && (read = calloc(1, sizeof(*read))) && host_read(read) == 0)
        h = read;
    identity_read(&id, run->resolve_fqdn);
    json_object_object_add(d, "host", h ? jsonobj_host(h, &id) : NULL);
    json_object_object_add(d, "usage", h ? jsonobj_usage(h) : NULL);
    if (read)
        host_facts_free(read);
    free(read);
}

json_object *report_data(const struct report_run *run)
{
    const struct apply_outcome *out = run->out;
    json_object *d = json_object_new_object();
    bool tier_known = run->plan != NULL;

    json_object_object_add(d, "agent_version", json_object_new_string(SHMPROV_VERSION));
    json_object_object_add(d, "command", json_object_new_string(run->command));
    json_object_object_add(d, "result", json_object_new_string(run->result));
    json_object_object_add(d, "corrective_change", json_object_new_boolean(run->corrective_change));
    json_object_object_add(d, "drift", drift_json(run->drift));
    json_object_object_add(d, "error", error_json(run));
    json_object_object_add(d, "rollback", out && out->rollback_ran ? rollback_json(out) : NULL);
    add_host(d, run);
    json_object_object_add(d, "profile", jsonobj_profile(run->profile, tier_known,
                                                         tier_known ? run->plan->sizing.tier : PROFILE_TIER_AUTO));
    json_object_object_add(d, "labels", jsonobj_labels(run->profile));
    json_object_object_add(d, "keys", keys_json(run));
    json_object_object_add(d, "dropin", dropin_json(run));
    json_object_object_add(d, "conflicts", run->conflicts ? conflicts_json(run->conflicts) : json_object_new_array());
    json_object_object_add(d, "probe", out && out->probe_ran ? probe_json(&out->probe) : NULL);
    json_object_object_add(d, "probe_leftovers_removed", leftovers_json(out));
    json_object_object_add(d, "warnings", run->plan ? strings_json(run->plan->warnings, run->plan->nwarnings)
                                                    : json_object_new_array());
    json_object_object_add(d, "runtime_skipped",
                           out && out->runtime_skipped ? jsonout_string(out->runtime_skip_reason) : NULL);
    jsonout_add_u64(d, "duration_ms", true, run->duration_ms);
    /* Set from the spool when the report is sent; here (--output json)
     * there is no spool to count. */
    json_object_object_add(d, "reports_dropped", json_object_new_uint64(0));
    json_object_object_add(d, "reports_quarantined", json_object_new_uint64(0));
    json_object_object_add(d, "reports_rejected", json_object_new_uint64(0));
    return d;
}

static int new_uuid(char out[REPORT_ID_LEN + 1])
{
    unsigned char b[16];
    ssize_t n = TEMP_FAILURE_RETRY(getrandom(b, sizeof(b), 0));

    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(b))
        return -EIO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    (void)snprintf(out, REPORT_ID_LEN + 1,
                   "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
                   b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

/* The CloudEvents sequence extension: a string whose lexicographic order
 * is the events' order, so 20 zero-padded digits. */
static void add_sequence(json_object *ev)
{
    uint64_t seq = 0;
    char text[24];
    int r = state_next_sequence(STATE_DIR, &seq);

    if (r < 0) {
        log_warn("cannot number the report in %s/%s: %s; sent without a sequence", STATE_DIR, STATE_FILE,
                 strerror(-r));
        return;
    }
    (void)snprintf(text, sizeof(text), "%020llu", (unsigned long long)seq);
    json_object_object_add(ev, "sequence", json_object_new_string(text));
}

int report_event(json_object *data, char **ret_json, char ret_id[REPORT_ID_LEN + 1])
{
    json_object *ev = json_object_new_object();
    char id[REPORT_ID_LEN + 1], source[IDENTITY_SOURCE_LEN + 1], when[CLOCK_TEXT_MAX];
    char *text;
    int r;

    r = new_uuid(id);
    if (r < 0) {
        json_object_put(data);
        json_object_put(ev);
        return r;
    }
    /* A failure here still gives a per-run source, never a shared one. */
    r = identity_source(IDENTITY_MACHINE_ID_PATH, STATE_DIR, source);
    if (r < 0)
        log_warn("no usable %s and cannot keep a host id in %s/%s: %s; this report's source is random, "
                 "so the collector sees a new host", IDENTITY_MACHINE_ID_PATH, STATE_DIR, IDENTITY_HOST_ID_NAME,
                 strerror(-r));
    /* To the microsecond: events of one flush are ordered by time too, not only by sequence. */
    clock_format_utc(clock_realtime_ns(), true, when);

    json_object_object_add(ev, "specversion", json_object_new_string("1.0"));
    json_object_object_add(ev, "id", json_object_new_string(id));
    json_object_object_add(ev, "source", json_object_new_string(source));
    json_object_object_add(ev, "type", json_object_new_string(REPORT_EVENT_TYPE));
    json_object_object_add(ev, "time", json_object_new_string(when));
    add_sequence(ev);
    json_object_object_add(ev, "datacontenttype", json_object_new_string("application/json"));
    json_object_object_add(ev, "dataschema", json_object_new_string(REPORT_DATASCHEMA));
    json_object_object_add(ev, "data", data);

    text = strdup(jsonout_text(ev, false));
    json_object_put(ev);
    if (!text)
        return -ENOMEM;
    *ret_json = text;
    memcpy(ret_id, id, sizeof(id));
    return 0;
}

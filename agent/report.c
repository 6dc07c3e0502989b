#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "hash.h"
#include "version.h"

static json_object *u64_or_null(bool known, uint64_t v) { return known ? json_object_new_uint64(v) : NULL; }

static json_object *step_json(const struct probe_step *s)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string(probe_status_name(s->status)));
    json_object_object_add(o, "errno", s->err ? json_object_new_int(s->err) : NULL);
    json_object_object_add(o, "detail", json_object_new_string(s->detail));
    return o;
}

static json_object *host_json(const struct host_facts *h)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "hostname", json_object_new_string(h->hostname));
    json_object_object_add(o, "kernel", json_object_new_string(h->kernel_release));
    json_object_object_add(o, "page_size", json_object_new_uint64(h->page_size));
    json_object_object_add(o, "memtotal_bytes", json_object_new_uint64(h->memtotal_bytes));
    return o;
}

static json_object *profile_json(const struct plan *plan)
{
    const struct profile *p = plan->profile;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "path", json_object_new_string(p->path));
    json_object_object_add(o, "sha256", json_object_new_string(p->sha256_hex));
    json_object_object_add(o, "tier", json_object_new_string(profile_tier_name(plan->sizing.tier)));
    json_object_object_add(o, "workload", json_object_new_string(profile_workload_name(p->workload)));
    json_object_object_add(o, "policy", json_object_new_string(profile_policy_name(p->policy)));
    return o;
}

static json_object *keys_json(const struct plan *plan, const struct conflicts *c, const struct apply_outcome *out)
{
    json_object *a = json_object_new_array();

    for (int id = 0; id < KEY_COUNT; id++) {
        const struct sizing_key *k = &plan->sizing.keys[id];
        json_object *o;

        if (!k->managed)
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "key", json_object_new_string(sizing_key_name(id)));
        json_object_object_add(o, "before", u64_or_null(k->current_known, k->current));
        json_object_object_add(o, "target", json_object_new_uint64(k->target));
        /* raise-only may keep a higher running value: the size the profile
         * asks for is shown beside it, with why the target differs. */
        json_object_object_add(o, "derived", json_object_new_uint64(k->derived));
        json_object_object_add(o, "source", json_object_new_string(k->source));
        json_object_object_add(o, "after", u64_or_null(out->keys[id].after_known && !out->runtime_skipped,
                                                       out->keys[id].after));
        json_object_object_add(o, "action", json_object_new_string(sizing_action_name(k->action)));
        json_object_object_add(o, "winning_file", conflicts_winner_json(c, id));
        json_object_array_add(a, o);
    }
    return a;
}

/* What plan would warn about: every lowering, a tier that does not fit the
 * host, usage that could not be read. */
static json_object *warnings_json(const struct plan *plan)
{
    json_object *a = json_object_new_array();

    for (unsigned i = 0; i < plan->nwarnings; i++)
        json_object_array_add(a, json_object_new_string(plan->warnings[i]));
    return a;
}

/* Test segments a killed shmprov left behind, removed before this run
 * planned (whether or not its own probe ran). */
static json_object *leftovers_json(const struct apply_outcome *out)
{
    json_object *a = json_object_new_array();

    for (int i = 0; i < out->probe_leftovers_found && i < PROBE_LEFTOVERS_MAX; i++) {
        const struct probe_leftover *l = &out->probe_leftovers[i];
        json_object *o;

        if (l->outcome != ORPHAN_REMOVED)
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int(l->seg.id));
        json_object_object_add(o, "bytes", json_object_new_uint64(l->seg.size));
        json_object_object_add(o, "creator_pid", json_object_new_int64(l->seg.cpid));
        json_object_array_add(a, o);
    }
    return a;
}

static json_object *probe_json(const struct apply_outcome *out)
{
    json_object *o;

    if (!out->probe_ran)
        return NULL;
    o = json_object_new_object();
    json_object_object_add(o, "passed", json_object_new_boolean(out->probe.passed));
    json_object_object_add(o, "upper_bound", step_json(&out->probe.upper_bound));
    json_object_object_add(o, "acceptance", step_json(&out->probe.acceptance));
    json_object_object_add(o, "round_trip", step_json(&out->probe.round_trip));
    json_object_object_add(o, "headroom_bytes", json_object_new_uint64(out->probe.headroom_bytes));
    json_object_object_add(o, "key_note", out->probe.key_note[0] ? json_object_new_string(out->probe.key_note) : NULL);
    return o;
}

json_object *report_data(const struct plan *plan, const struct conflicts *c, const struct apply_outcome *out,
                         uint64_t duration_ms, uint64_t reports_dropped)
{
    json_object *d = json_object_new_object(), *dropin = json_object_new_object();
    char sha[65], error[sizeof(out->error) + sizeof(out->restored) + 16];

    hash_sha256_hex(plan->dropin_new, plan->dropin_new_len, sha);
    json_object_object_add(d, "agent_version", json_object_new_string(SHMPROV_VERSION));
    json_object_object_add(d, "host", host_json(&plan->host));
    json_object_object_add(d, "profile", profile_json(plan));
    json_object_object_add(d, "keys", keys_json(plan, c, out));
    json_object_object_add(dropin, "path", json_object_new_string(out->dropin_path));
    json_object_object_add(dropin, "changed", json_object_new_boolean(out->dropin_written));
    json_object_object_add(dropin, "sha256", json_object_new_string(sha));
    json_object_object_add(d, "dropin", dropin);
    json_object_object_add(d, "conflicts", conflicts_json(c));
    json_object_object_add(d, "probe", probe_json(out));
    json_object_object_add(d, "probe_leftovers_removed", leftovers_json(out));
    json_object_object_add(d, "usage", plan_usage_json(&plan->host));
    json_object_object_add(d, "warnings", warnings_json(plan));
    json_object_object_add(d, "result", json_object_new_string(apply_result_name(out->result)));
    json_object_object_add(d, "runtime_skipped",
                           out->runtime_skipped ? json_object_new_string(out->runtime_skip_reason) : NULL);
    if (out->error[0]) {
        (void)snprintf(error, sizeof(error), "%s%s%s", out->error, out->restored[0] ? "; restored: " : "",
                       out->restored);
        json_object_object_add(d, "error", json_object_new_string(error));
    } else {
        json_object_object_add(d, "error", NULL);
    }
    json_object_object_add(d, "duration_ms", json_object_new_uint64(duration_ms));
    json_object_object_add(d, "reports_dropped", json_object_new_uint64(reports_dropped));
    /* Set from the spool when the report is sent; here (apply --output
     * json) there is no spool to count. */
    json_object_object_add(d, "reports_quarantined", json_object_new_uint64(0));
    json_object_object_add(d, "reports_rejected", json_object_new_uint64(0));
    return d;
}

void report_source(const char *machine_id_path, char *buf, size_t len)
{
    char *id = NULL, *salted = NULL, hex[65];
    size_t id_len;

    if (fsutil_read_file(machine_id_path, 256, false, &id, &id_len, NULL) < 0 || id_len < 32 ||
        asprintf(&salted, "shmprov report source v1\n%.32s", id) < 0) {
        (void)snprintf(buf, len, "/shmprov/host/unknown");
        free(id);
        return;
    }
    /* One-way, and specific to shmprov: the machine id itself, which other
     * software treats as a secret-ish stable identifier, never leaves. */
    hash_sha256_hex(salted, strlen(salted), hex);
    (void)snprintf(buf, len, "/shmprov/host/%.32s", hex);
    free(salted);
    free(id);
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

int report_event(json_object *data, char **ret_json, char ret_id[REPORT_ID_LEN + 1])
{
    json_object *ev = json_object_new_object();
    char id[REPORT_ID_LEN + 1], source[64], when[32];
    struct timespec ts;
    struct tm tm;
    char *text;
    int r;

    r = new_uuid(id);
    if (r < 0) {
        json_object_put(data);
        json_object_put(ev);
        return r;
    }
    report_source("/etc/machine-id", source, sizeof(source));
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    (void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm); /* 20 bytes of 32 until the year 10000 */

    json_object_object_add(ev, "specversion", json_object_new_string("1.0"));
    json_object_object_add(ev, "id", json_object_new_string(id));
    json_object_object_add(ev, "source", json_object_new_string(source));
    json_object_object_add(ev, "type", json_object_new_string(REPORT_EVENT_TYPE));
    json_object_object_add(ev, "time", json_object_new_string(when));
    json_object_object_add(ev, "datacontenttype", json_object_new_string("application/json"));
    json_object_object_add(ev, "dataschema", json_object_new_string("https://shmprov.dev/schemas/report.schema.json"));
    json_object_object_add(ev, "data", data);

    text = strdup(json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(ev);
    if (!text)
        return -ENOMEM;
    *ret_json = text;
    memcpy(ret_id, id, sizeof(id));
    return 0;
}

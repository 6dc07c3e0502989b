#include "jsonobj.h"

#include "jsonout.h"
#include "version.h"

/* An identity field that could not be read is empty: null. */
static json_object *nonempty_string(const char *s)
{
    return s[0] ? jsonout_string(s) : NULL;
}

json_object *jsonobj_host(const struct host_facts *h, const struct host_identity *id)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "hostname", jsonout_string(h->hostname));
    json_object_object_add(o, "fqdn", id->fqdn_known ? nonempty_string(id->fqdn) : NULL);
    json_object_object_add(o, "kernel", jsonout_string(h->kernel_release));
    json_object_object_add(o, "arch", nonempty_string(id->arch));
    json_object_object_add(o, "os_id", nonempty_string(id->os_id));
    json_object_object_add(o, "os_version_id", nonempty_string(id->os_version_id));
    jsonout_add_u64(o, "page_size", true, h->page_size);
    jsonout_add_u64(o, "memtotal_bytes", true, h->memtotal_bytes);
    return o;
}

json_object *jsonobj_profile(const struct profile *p, bool tier_known, enum ram_tier tier)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "path", jsonout_string(p->path));
    json_object_object_add(o, "builtin", json_object_new_boolean(p->builtin));
    json_object_object_add(o, "sha256", json_object_new_string(p->sha256_hex));
    json_object_object_add(o, "ram_tier", json_object_new_string(profile_tier_name(p->ram_tier)));
    json_object_object_add(o, "tier", tier_known ? json_object_new_string(profile_tier_name(tier)) : NULL);
    json_object_object_add(o, "workload", json_object_new_string(profile_workload_name(p->workload)));
    json_object_object_add(o, "policy", json_object_new_string(profile_policy_name(p->policy)));
    return o;
}

json_object *jsonobj_document(const char *command, const struct profile *p, enum ram_tier tier,
                              const struct host_facts *h)
{
    json_object *doc = json_object_new_object(), *profile = jsonobj_profile(p, true, tier);
    struct host_identity id;

    json_object_object_add(doc, "command", json_object_new_string(command));
    json_object_object_add(doc, "agent_version", json_object_new_string(SHMPROV_VERSION));
    json_object_object_add(profile, "note", p->builtin ? json_object_new_string(PROFILE_BUILTIN_NOTE) : NULL);
    json_object_object_add(doc, "profile", profile);
    json_object_object_add(doc, "labels", jsonobj_labels(p));
    identity_read(&id, false);
    json_object_object_add(doc, "host", jsonobj_host(h, &id));
    return doc;
}

json_object *jsonobj_labels(const struct profile *p)
{
    json_object *o = json_object_new_object();

    for (unsigned i = 0; i < p->nlabels; i++)
        json_object_object_add(o, p->labels[i].name, jsonout_string(p->labels[i].value));
    return o;
}

json_object *jsonobj_key(enum sizing_key_id id, const struct sizing_key *k)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "key", json_object_new_string(sizing_key_name(id)));
    jsonout_add_u64(o, "before", k->current_known, k->current);
    jsonout_add_u64(o, "derived", true, k->derived);
    jsonout_add_u64(o, "target", true, k->target);
    json_object_object_add(o, "source", json_object_new_string(k->source));
    json_object_object_add(o, "action", json_object_new_string(sizing_action_name(k->action)));
    return o;
}

json_object *jsonobj_usage(const struct host_facts *h)
{
    struct sizing_headroom room = sizing_headroom_now(&h->current, h->page_size, h->usage.pages, h->usage.segments);
    json_object *o;

    if (!h->usage_known)
        return NULL;
    o = json_object_new_object();
    jsonout_add_u64(o, "segments", true, h->usage.segments);
    jsonout_add_u64(o, "bytes", true, h->usage.bytes);
    jsonout_add_u64(o, "pages", true, h->usage.pages);
    jsonout_add_u64(o, "largest_segment", true, h->usage.largest_segment);
    /* Under the limits in force when this was read (for apply: before it). */
    jsonout_add_u64(o, "headroom_bytes", room.known, room.bytes);
    json_object_object_add(o, "headroom_limited_by",
                           room.known ? json_object_new_string(sizing_key_name(room.limited_by)) : NULL);
    return o;
}

#pragma once
/* The objects every JSON document shares (the host, the profile, its
 * labels, a key), built in one place so they have one shape everywhere. */

#include <json-c/json.h>
#include <stdbool.h>

#include "host.h"
#include "identity.h"
#include "profile.h"
#include "sizing.h"

/* {hostname, fqdn, kernel, arch, os_id, os_version_id, page_size,
 * memtotal_bytes}; an identity field not read is null. */
json_object *jsonobj_host(const struct host_facts *h, const struct host_identity *id);

/* {path, builtin, sha256, ram_tier, tier, workload, policy}: ram_tier as
 * the profile says, tier as resolved (NULL tier_known: not resolved yet). */
json_object *jsonobj_profile(const struct profile *p, bool tier_known, enum ram_tier tier);

/* What plan's and status's documents start with: {command, agent_version,
 * profile (with the note why the built-in default was chosen), labels, host}. */
json_object *jsonobj_document(const char *command, const struct profile *p, enum ram_tier tier,
                              const struct host_facts *h);

/* The profile's labels as an object of strings ({} when none). */
json_object *jsonobj_labels(const struct profile *p);

/* {key, before, derived, target, source, action} for a managed key; the
 * caller adds what its document knows more. */
json_object *jsonobj_key(enum sizing_key_id id, const struct sizing_key *k);

/* Shared memory in use, as plan and the report show it; NULL (JSON null)
 * when /proc/sysvipc/shm could not be read. */
json_object *jsonobj_usage(const struct host_facts *h);

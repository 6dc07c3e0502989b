#pragma once
/* Who this host is, for reports: the CloudEvents source that names it, and
 * the facts a fleet groups hosts by (FQDN, distribution, architecture).
 * Reading never changes anything except, once, the state directory's host
 * id (identity_source). The parsers are declared in testing.h, for the
 * tests. */

#include <stdbool.h>
#include <stddef.h>

#define IDENTITY_SOURCE_PREFIX "urn:shmprov:host:"
/* "urn:shmprov:host:" + 32 lowercase hex digits, without the NUL. */
#define IDENTITY_SOURCE_LEN (sizeof(IDENTITY_SOURCE_PREFIX) - 1 + 32)
#define IDENTITY_MACHINE_ID_PATH "/etc/machine-id"
#define IDENTITY_HOST_ID_NAME "host-id"
/* os-release is a few hundred bytes; anything past this is not one. */
#define IDENTITY_OS_RELEASE_MAX ((size_t)64 * 1024)

/* Where identity_source() got the host's id from. */
enum identity_origin {
    IDENTITY_FROM_MACHINE_ID = 0, /* machine_id_path */
    IDENTITY_FROM_HOST_ID = 1,    /* <state_dir>/host-id, read or created now */
};

/* Writes the CloudEvents source of this host into buf: "urn:shmprov:host:" and the first 32 hex
 * digits of sha256("shmprov report source v1\n" + id), where id is the
 * 32-hex-digit machine id read from machine_id_path (the same value the v1
 * report_source() derived, so a host keeps its source across the upgrade);
 * the machine id itself never leaves the host.
 *
 * When machine_id_path holds no usable id (missing, unreadable, empty as in
 * container images, "uninitialized", all zeros), a random id is created
 * ONCE in <state_dir>/host-id (32 hex digits and a newline, mode 0644,
 * state_dir created 0755 if missing) and hashed the same way, so two hosts
 * without a machine id never share a source. Creation is exclusive: when
 * two runs race, both end up with the id that reached the file first.
 *
 * Returns an enum identity_origin (>= 0), or a negative errno when neither
 * id could be read or kept (e.g. a read-only state directory): buf then
 * holds a source made from a random id for this run only, in the same
 * form. It is never a shared placeholder: events from such a host look like
 * they come from a new host each run, which is visible and harmless, while
 * one "unknown" source shared by many hosts would merge their histories. */
int identity_source(const char *machine_id_path, const char *state_dir, char buf[IDENTITY_SOURCE_LEN + 1]);

struct host_identity {
    char fqdn[256];
    bool fqdn_known;
    char os_id[64];         /* os-release ID, "" when unknown */
    char os_version_id[64]; /* os-release VERSION_ID, "" when unknown (rolling releases have none) */
    char arch[64];          /* uname -m, "" when unknown */
};

/* Fills *ret; each fact that cannot be found is left unknown. The os-release
 * facts come from /etc/os-release, or /usr/lib/os-release when that cannot
 * be read (os-release(5)); $SHMPROV_TEST_OS_RELEASE, a test-only override,
 * names the one file to read instead. The FQDN is the node name when it has
 * a dot; otherwise, only with resolve_fqdn (it may wait on DNS), the
 * canonical name getaddrinfo(AI_CANONNAME) gives for it, when that has a
 * dot. Names that only say "this machine" (localhost, *.localdomain) are
 * not an FQDN. Returns 0. */
int identity_read(struct host_identity *ret, bool resolve_fqdn);

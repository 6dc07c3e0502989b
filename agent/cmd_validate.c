/* `shmprov validate [FILE...]`: parse and check profiles, report every
 * problem of each file, touch nothing. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "jsonout.h"
#include "fsutil.h"
#include "host.h"
#include "log.h"
#include "sizing.h"

/* Checks a parsed profile against this host: overrides that contradict each
 * other (shmall x page size < shmmax) depend on the page size. */
static void check_against_host(const struct profile *p, const struct host_facts *h,
                               struct profile_diags *diags)
{
    struct sizing_input in = {
        .profile = p,
        .memtotal_bytes = h->memtotal_bytes ? h->memtotal_bytes : SIZING_TIER_SMALL_RAM,
        .page_size = h->page_size,
        .force = true, /* segments are the host's business, not the file's */
    };
    struct sizing_result s;

    if (sizing_compute(&in, &s) < 0)
        return;
    for (unsigned i = 0; i < s.nproblems; i++)
        if (s.problems[i].in_profile) /* only limits.shmall can contradict */
            profile_diags_add(diags, p->shmall.mark.line, p->shmall.mark.col, "%s", s.problems[i].text);
}

/* path NULL: the built-in default profile. */
static int validate_one(const char *path, const struct host_facts *h, json_object *results)
{
    struct profile_diags diags;
    struct profile *p = NULL;
    int r;
    bool ok;

    profile_diags_init(&diags, path ? path : PROFILE_BUILTIN_NAME);
    r = path ? profile_load(path, &diags, &p) : profile_load_builtin(&diags, &p);
    path = path ? path : PROFILE_BUILTIN_NAME;
    if (r == 0)
        check_against_host(p, h, &diags);
    if (r < 0 && diags.count == 0)
        profile_diags_add(&diags, 0, 0, "cannot read: %s", fsutil_strerror(r));
    ok = diags.count == 0;

    if (results) {
        json_object *o = json_object_new_object(), *errors = json_object_new_array();
        for (size_t i = 0; i < diags.count; i++) {
            json_object *e = json_object_new_object();
            json_object_object_add(e, "line", json_object_new_int((int)diags.items[i].line));
            json_object_object_add(e, "column", json_object_new_int((int)diags.items[i].col));
            json_object_object_add(e, "message", jsonout_string(diags.items[i].message));
            json_object_array_add(errors, e);
        }
        json_object_object_add(o, "path", jsonout_string(path));
        json_object_object_add(o, "valid", json_object_new_boolean(ok));
        json_object_object_add(o, "errors", errors);
        json_object_array_add(results, o);
    } else if (ok) {
        printf("%s: ok\n", path);
    }
    profile_diags_print(&diags);
    profile_diags_free(&diags);
    profile_free(p);
    return ok ? 0 : -EINVAL;
}

static int cmd_validate(const struct cli_options *o)
{
    const char *implicit = o->profile_path ? o->profile_path : PROFILE_DEFAULT_PATH;
    json_object *doc = NULL, *results = NULL;
    struct host_facts host;
    bool all_ok = true;

    if (host_read(&host) < 0) {
        log_error("cannot read the page size of this kernel");
        return EXIT_FAILURE_RUNTIME;
    }
    if (o->output == CLI_OUTPUT_JSON) {
        doc = json_object_new_object();
        results = json_object_new_array();
        json_object_object_add(doc, "command", json_object_new_string("validate"));
        json_object_object_add(doc, "files", results);
    }

    /* Without files, validate what plan would use, built-in default included. */
    if (o->nargs == 0) {
        if (!o->profile_path && access(implicit, F_OK) < 0 && errno == ENOENT)
            implicit = NULL;
        all_ok = validate_one(implicit, &host, results) == 0;
    }
    for (int i = 0; i < o->nargs; i++)
        if (validate_one(o->args[i], &host, results) < 0)
            all_ok = false;

    if (doc) {
        json_object_object_add(doc, "valid", json_object_new_boolean(all_ok));
        printf("%s\n", jsonout_text(doc, true));
        json_object_put(doc);
    }
    host_facts_free(&host);
    return all_ok ? EXIT_OK : EXIT_USAGE;
}

const struct cli_command cmd_validate_entry = {
    .name = "validate",
    .args = "[FILE...]",
    .help = "check profiles (default: the profile plan would use); no side effects",
    .exec = cmd_validate,
};

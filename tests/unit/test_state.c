/* The state file: what the last successful apply set, how the last apply
 * of any result went, and the event sequence. States are static in the
 * tests below: each holds a PATH_MAX drop-in path, too much for a stack
 * frame, and every test runs in a process of its own. */
#include "helpers.h"
#include "isolate.h"
#include "state.h"

/* state_next_sequence() and state_record_run() take STATE_LOCK_PATH: in a
 * mount namespace of the test's own with a tmpfs over /run (isolate.h), so
 * the host's /run stays as it was. */
static void scratch_and_run(void)
{
    isolate(CLONE_NEWNS, "takes the state lock in /run/shmprov");
    isolate_tmpfs("/run", "size=1m,mode=0755");
    scratch_make();
}

static void write_state(const char *text)
{
    put_file(scratch(), STATE_FILE, text);
}

Test(state, missing_file_is_nothing_remembered, .init = scratch_make, .fini = scratch_remove)
{
    static struct state s;

    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert_eq(s.sequence, 0);
    cr_assert(!s.last_apply.known);
}

Test(state, sequence_counts_up_and_apply_round_trips, .init = scratch_and_run, .fini = scratch_remove)
{
    static struct state_apply a = { .known = true, .managed = { true, true, false },
                                    .value = { UINT64_C(18446744073692774399), 4194304, 0 } };
    static struct state s;
    uint64_t seq = 0;

    cr_assert_eq(state_next_sequence(scratch(), &seq), 0);
    cr_assert_eq(seq, 1);
    cr_assert_eq(state_next_sequence(scratch(), &seq), 0);
    cr_assert_eq(seq, 2);
    strcpy(a.dropin_path, "/etc/sysctl.d/60-shmprov.conf");
    memset(a.dropin_sha256, 'a', 64);
    memset(a.profile_sha256, 'b', 64);
    strcpy(a.time, "2026-12-05T10:00:00Z");
    struct state_run run = { .known = true, .result = "changed", .end = 1796464800, .duration_ms = 12,
                             .probe_passed = 1 };
    cr_assert_eq(state_record_run(scratch(), &run, &a, NULL), 0);
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert_eq(s.sequence, 2, "recording an apply keeps the sequence");
    cr_assert(s.last_apply.known);
    cr_assert(s.last_apply.managed[0] && s.last_apply.managed[1] && !s.last_apply.managed[2]);
    cr_assert_eq(s.last_apply.value[0], UINT64_C(18446744073692774399), "exact above 2^53");
    cr_assert_str_eq(s.last_apply.dropin_path, a.dropin_path);
    cr_assert_str_eq(s.last_apply.dropin_sha256, a.dropin_sha256);
    cr_assert_eq(state_next_sequence(scratch(), &seq), 0);
    cr_assert_eq(seq, 3);
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert(s.last_apply.known, "numbering keeps the last apply");
}

Test(state, damaged_file_is_moved_aside_and_numbering_restarts, .init = scratch_and_run, .fini = scratch_remove)
{
    char aside[128];
    static struct state s;
    uint64_t seq = 0;

    write_state("{\"sequence\": 7, \"last_apply\": ");
    cr_assert_eq(state_load(scratch(), &s), -EBADMSG);
    cr_assert_eq(state_next_sequence(scratch(), &seq), 0);
    cr_assert_eq(seq, 1);
    (void)snprintf(aside, sizeof(aside), "%s/%s.damaged", scratch(), STATE_FILE);
    cr_assert_eq(access(aside, F_OK), 0, "the damaged file is kept for a person");
}

Test(state, numbers_are_strings_never_json_numbers, .init = scratch_make, .fini = scratch_remove)
{
    static struct state s;

    write_state("{\"version\": 1, \"sequence\": 5}");
    cr_assert_eq(state_load(scratch(), &s), -EBADMSG);
    write_state("{\"version\": 1, \"sequence\": \"5\", \"last_apply\": null}");
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert_eq(s.sequence, 5);
}

Test(state, every_result_is_the_last_run_and_only_success_moves_last_success, .init = scratch_and_run,
     .fini = scratch_remove)
{
    static struct state_apply a = { .known = true, .managed = { true, true, false },
                                    .value = { 4294967296, 1048576, 0 } };
    struct state_run ok = { .known = true, .result = "unchanged", .end = 1000, .duration_ms = 3, .probe_passed = 1 };
    struct state_run refused = { .known = true, .result = "refused", .end = 2000, .duration_ms = 10001,
                                 .probe_passed = -1 };
    static struct state s, got;

    strcpy(a.dropin_path, "/etc/sysctl.d/60-shmprov.conf");
    strcpy(a.time, "2026-12-05T10:00:00Z");
    cr_assert_eq(state_record_run(scratch(), &ok, &a, &got), 0);
    cr_assert_eq(got.last_success_end, 1000, "ret is the state as written");
    cr_assert_eq(state_record_run(scratch(), &refused, NULL, NULL), 0);
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert(s.last_run.known);
    cr_assert_str_eq(s.last_run.result, "refused");
    cr_assert_eq(s.last_run.end, 2000);
    cr_assert_eq(s.last_run.duration_ms, 10001);
    cr_assert_eq(s.last_run.probe_passed, -1, "no test allocation ran: null in the file, -1 here");
    cr_assert_eq(s.last_success_end, 1000, "a refusal is no success");
    cr_assert(s.last_apply.known, "nor does it touch the drift record");
    cr_assert_str_eq(s.last_apply.time, "2026-12-05T10:00:00Z");

    /* The same apply again: a new end, the drift record's time kept. */
    ok.end = 3000;
    ok.probe_passed = 0;
    strcpy(a.time, "2026-12-06T10:00:00Z");
    cr_assert_eq(state_record_run(scratch(), &ok, &a, NULL), 0);
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert_eq(s.last_success_end, 3000);
    cr_assert_eq(s.last_run.probe_passed, 0);
    cr_assert_str_eq(s.last_apply.time, "2026-12-05T10:00:00Z", "same values: the time of the apply that set them");
}

Test(state, a_file_without_runs_or_with_a_bad_run_loads, .init = scratch_make, .fini = scratch_remove)
{
    static struct state s;

    /* As written before last_run existed. */
    write_state("{\"version\": 1, \"sequence\": \"4\", \"last_apply\": null}");
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert(!s.last_run.known);
    cr_assert_eq(s.last_success_end, 0);
    /* A result word no apply gives never becomes a label value; the rest
     * of the file still counts. */
    write_state("{\"version\": 1, \"sequence\": \"4\", \"last_run\": {\"result\": \"x\\\"y\", \"end\": \"5\", "
                "\"duration_ms\": \"1\", \"probe_passed\": null}, \"last_successful_apply_end\": \"5\"}");
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert(!s.last_run.known);
    cr_assert_eq(s.sequence, 4);
    cr_assert_eq(s.last_success_end, 5);
    write_state("{\"version\": 1, \"sequence\": \"4\", \"last_run\": {\"result\": \"failed\", \"end\": 5, "
                "\"duration_ms\": \"1\"}}");
    cr_assert_eq(state_load(scratch(), &s), 0);
    cr_assert(!s.last_run.known, "numbers are strings here too");
}

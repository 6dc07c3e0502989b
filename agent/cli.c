#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apply.h"
#include "clock.h"
#include "fsutil.h"
#include "host.h"
#include "jsonout.h"
#include "lastapply.h"
#include "lock.h"
#include "log.h"
#include "runreport.h"
#include "streams.h"
#include "version.h"

/* In the order the help lists them. */
static const struct cli_command *const commands[] = {
    &cmd_plan_entry,     &cmd_apply_entry, &cmd_remove_entry, &cmd_verify_entry,
    &cmd_validate_entry, &cmd_flush_entry, &cmd_status_entry,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The options every command takes, before or after its name. */
static const struct global_option {
    char letter;
    const char *name, *arg, *help;
} globals[] = {
    { 'p', "profile", "FILE", "host profile (default " PROFILE_DEFAULT_PATH "; when it does not exist the built-in "
                              "default profile is used: auto tier, general workload, policy enforce)" },
    { 'o', "output", "FORMAT", "text (default) or json: one JSON document on stdout; prometheus (status only): the "
                               "metrics in Prometheus' text format, as metrics.textfile in the profile receives them" },
    { 'q', "quiet", NULL, "only errors on stderr" },
    { 'v', "verbose", NULL, "more detail on stderr" },
    { 'h', "help", NULL, "show this help" },
    { 'V', "version", NULL, "show the version" },
};
#define NGLOBALS (sizeof(globals) / sizeof(globals[0]))
#define GLOBAL_LETTERS ":p:o:qvhV"

/* getopt_long's value for a command's option: OPT_COMMAND + its index
 * (apply, the largest, has 8 options). */
enum { OPT_COMMAND = 0x100, MAX_COMMAND_OPTIONS = 16 };

/* parse_argv()'s "go on": anything else is the exit code. */
enum { CONTINUE = -1 };

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("shmprov: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see 'shmprov --help')\n", stderr);
    return EXIT_USAGE;
}

/* One entry of the help: "<prefix><name> <arg>" at indent, then text from
 * column 23, wrapped to 80 columns. */
static void print_help_entry(int indent, const char *prefix, const char *name, const char *arg, const char *text)
{
    char label[64];
    int col, word;

    (void)snprintf(label, sizeof(label), "%s%s%s%s", prefix, name, arg ? " " : "", arg ? arg : "");
    col = printf("%*s%-*s", indent, "", 22 - indent, label);
    for (; *text; text += word + (text[word] == ' ')) {
        word = (int)strcspn(text, " ");
        if (col + 1 + word > 80)
            col = printf("\n%22s", "") - 1;
        col += printf(" %.*s", word, text);
    }
    putchar('\n');
}

static void print_help(void)
{
    char prefix[8];

    fputs("Usage: shmprov [--profile FILE] [--output text|json|prometheus] [-q|-v] COMMAND [OPTIONS]\n\n"
          "Sizes System V shared memory (kernel.shmmax, kernel.shmall) from a host profile.\n\n"
          "Commands:\n", stdout);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        print_help_entry(2, "", commands[i]->name, commands[i]->args, commands[i]->help);
        for (const struct cli_option *opt = commands[i]->options; opt && opt->name; opt++)
            print_help_entry(4, "--", opt->name, opt->arg, opt->help);
    }
    fputs("\nOptions:\n", stdout);
    for (size_t i = 0; i < NGLOBALS; i++) {
        (void)snprintf(prefix, sizeof(prefix), "-%c, --", globals[i].letter);
        print_help_entry(2, prefix, globals[i].name, globals[i].arg, globals[i].help);
    }
    fputs("\nExit status: 0 success (also \"nothing to change\", \"nothing to remove\" and\n"
          "\"runtime not applicable here\" where /proc/sys is read-only), 1 run-time\n"
          "failure (apply or remove refused or rolled back, an I/O error, the result not\n"
          "written; plan: apply would refuse), 2 bad invocation or invalid profile\n"
          "(nothing touched), 3 verify found drift.\n\n"
          "Diagnostics go to stderr; stdout carries only the result.\n", stdout);
}

/* An option getopt_long refused, as given; cmd NULL before the command. */
static int refuse_option(const char *text, const struct cli_command *cmd)
{
    /* Not "--name" alone: "-x", "--force=1" (no value to give), ... */
    if (strncmp(text, "--", 2) != 0 || strchr(text, '='))
        return cli_usage_error("unknown option '%s'", text);
    if (!cmd)
        return cli_usage_error("%s is not a global option: a command's options go after its name", text);
    return cli_usage_error("%s is not an option of '%s'", text, cmd->name);
}

/* The global options, then cmd's (if any), for getopt_long. */
static void long_options(const struct cli_command *cmd, struct option *ret)
{
    size_t n = 0;

    for (size_t i = 0; i < NGLOBALS; i++)
        ret[n++] = (struct option){ globals[i].name, globals[i].arg ? required_argument : no_argument, NULL,
                                    globals[i].letter };
    for (int i = 0; cmd && cmd->options && cmd->options[i].name && i < MAX_COMMAND_OPTIONS; i++)
        ret[n++] = (struct option){ cmd->options[i].name, cmd->options[i].arg ? required_argument : no_argument,
                                    NULL, OPT_COMMAND + i };
    ret[n] = (struct option){ 0 };
}

static int set_output(const char *format, struct cli_options *o)
{
    static const char *const names[] = { [CLI_OUTPUT_TEXT] = "text", [CLI_OUTPUT_JSON] = "json",
                                         [CLI_OUTPUT_PROMETHEUS] = "prometheus" };

    for (o->output = CLI_OUTPUT_TEXT; o->output <= CLI_OUTPUT_PROMETHEUS; o->output++)
        if (strcmp(format, names[o->output]) == 0)
            return CONTINUE;
    return cli_usage_error("--output must be 'text', 'json' or 'prometheus', not '%s'", format);
}

/* Returns CONTINUE, or the exit code: --help and --version end the run
 * here, successfully. */
static int set_global(int letter, const char *arg, struct cli_options *o)
{
    switch (letter) {
    case 'p':
        if (arg[0] == '\0')
            return cli_usage_error("--profile needs a file name");
        o->profile_path = arg;
        return CONTINUE;
    case 'o':
        return set_output(arg, o);
    case 'q':
        log_set_level(LOG_QUIET);
        return CONTINUE;
    case 'v':
        log_set_level(LOG_VERBOSE);
        return CONTINUE;
    case 'h':
        print_help();
        return EXIT_OK;
    default: /* 'V' */
        printf("shmprov %s\n", SHMPROV_VERSION);
        return EXIT_OK;
    }
}

static void set_command_option(const struct cli_option *opt, const char *arg)
{
    if (opt->value)
        *opt->value = arg;
    else
        *opt->flag = true;
}

/* Parses the options in argv[1..] (argv[0] is the program or the
 * command's name): before the command (cmd NULL) only the global ones, up
 * to the first word; after it cmd's too, anywhere. Returns CONTINUE or the
 * exit code. */
static int parse_options(int argc, char **argv, const struct cli_command *cmd, struct cli_options *o)
{
    struct option longopts[NGLOBALS + MAX_COMMAND_OPTIONS + 1];
    int c, r;

    long_options(cmd, longopts);
    optind = 0; /* from the start of this argv, as getopt_long has not seen it */
    opterr = 0;
    while ((c = getopt_long(argc, argv, cmd ? GLOBAL_LETTERS : "+" GLOBAL_LETTERS, longopts, NULL)) != -1) {
        if (c == ':')
            return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        if (c == '?')
            return refuse_option(argv[optind - 1], cmd);
        if (cmd && c >= OPT_COMMAND) { /* without a command, only globals are in longopts */
            set_command_option(&cmd->options[c - OPT_COMMAND], optarg);
        } else if ((r = set_global(c, optarg, o)) != CONTINUE) {
            return r;
        }
    }
    return CONTINUE;
}

/* What a command's option table cannot say: how many arguments it takes,
 * whether --output prometheus. */
static int check_command_line(const struct cli_command *cmd, const struct cli_options *o)
{
    if (!cmd->args && o->nargs > 0)
        return cli_usage_error("unexpected argument '%s'", o->args[0]);
    /* apply, remove and verify write the metrics to metrics.textfile;
     * their stdout is their result. */
    if (o->output == CLI_OUTPUT_PROMETHEUS && !cmd->prometheus)
        return cli_usage_error("--output prometheus is for 'status' only, not '%s' (apply, verify and status write "
                               "the metrics to the profile's metrics.textfile)", cmd->name);
    return CONTINUE;
}

/* The global options, the command, its options and arguments. Returns
 * CONTINUE with *ret_cmd to run, or the exit code. */
static int parse_argv(int argc, char **argv, struct cli_options *o, const struct cli_command **ret_cmd)
{
    int first, r = parse_options(argc, argv, NULL, o);

    if (r != CONTINUE)
        return r;
    if (optind >= argc)
        return cli_usage_error("no command given");
    first = optind;
    for (size_t i = 0; i < NCOMMANDS && !*ret_cmd; i++)
        if (strcmp(commands[i]->name, argv[first]) == 0)
            *ret_cmd = commands[i];
    if (!*ret_cmd)
        return cli_usage_error("unknown command '%s'", argv[first]);
    r = parse_options(argc - first, argv + first, *ret_cmd, o);
    if (r != CONTINUE)
        return r;
    o->args = argv + first + optind;
    o->nargs = argc - first - optind;
    return check_command_line(*ret_cmd, o);
}

/* Exit 2 is for what the operator named or wrote: no such file, not a
 * regular file, too large, a symlink loop. A failure of the machine while
 * reading (EIO, EACCES, ENOSPC, ENOMEM, EMFILE...) is a run-time failure. */
static bool profile_error_is_invalid(int r)
{
    return r == -ENOENT || r == -ENOTDIR || r == -EISDIR || r == -EINVAL || r == -EFBIG || r == -ELOOP ||
           r == -ENAMETOOLONG;
}

int cli_load_profile(const struct cli_options *o, struct profile **ret)
{
    struct profile_diags diags;
    const char *path = o->profile_path ? o->profile_path : PROFILE_DEFAULT_PATH;
    bool invalid;
    int r;

    profile_diags_init(&diags, path);
    r = profile_load(path, &diags, ret);
    if (r == -ENOENT && !o->profile_path) {
        log_info("%s", PROFILE_BUILTIN_NOTE);
        r = profile_load_builtin(&diags, ret);
    }
    if (r == 0) {
        profile_diags_free(&diags);
        return EXIT_OK;
    }
    invalid = diags.count > 0 || profile_error_is_invalid(r);
    if (diags.count > 0)
        profile_diags_print(&diags);
    else
        log_error("cannot read profile '%s': %s", path, fsutil_strerror(r));
    profile_diags_free(&diags);
    return invalid ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
}

int cli_check_root(const char *root)
{
    struct stat st;

    if (root[0] != '/' || strcmp(root, "/") == 0) {
        log_error("--root must be an absolute directory other than '/', not '%s'", root);
        return -EINVAL;
    }
    if (stat(root, &st) < 0) {
        log_error("--root '%s': %s", root, strerror(errno));
        return -EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("--root '%s': not a directory", root);
        return -EINVAL;
    }
    return 0;
}

/* Logs a reason; returns it, allocated (NULL when out of memory). */
static char *say_error_v(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *say_error_v(const char *fmt, va_list ap)
{
    char *text;

    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    log_error("%s", text ? text : strerror(ENOMEM));
    return text;
}

/* Logs a reason, and keeps it for the report when asked to. */
static void say_error(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_error(char **why, const char *fmt, ...)
{
    char *text;
    va_list ap;

    va_start(ap, fmt);
    text = say_error_v(fmt, ap);
    va_end(ap);
    if (why)
        *why = text;
    else
        free(text);
}

int cli_lock(const char *path, struct lock **ret, char **why)
{
    long holder = 0;
    int r = lock_acquire(path, LOCK_WAIT_MS, ret, &holder);

    if (r == -EWOULDBLOCK)
        say_error(why, "another shmprov (pid %ld) holds %s; gave up after %d s", holder, path,
                  LOCK_WAIT_MS / 1000);
    else if (r < 0)
        say_error(why, "cannot lock %s: %s", path, strerror(-r));
    return r;
}

int cli_build_plan(const struct profile *profile, bool force, const char *root, struct plan **ret, char **why)
{
    struct host_facts host;
    int r = host_read(&host);

    if (r < 0) {
        say_error(why, "cannot read the page size of this kernel: %s", strerror(-r));
        return EXIT_FAILURE_RUNTIME;
    }
    if (host.memtotal_bytes == 0 && profile->ram_tier == PROFILE_TIER_AUTO) {
        say_error(why,
                  "cannot read MemTotal (%s), which 'ram_tier: auto' needs; set host.ram_tier in the profile",
                  host.memtotal_error);
        host_facts_free(&host);
        return EXIT_FAILURE_RUNTIME;
    }
    r = plan_build(profile, &host, force, root, ret);
    if (r < 0) {
        say_error(why, "cannot build the plan: %s", strerror(-r));
        return EXIT_FAILURE_RUNTIME;
    }
    /* A profile that contradicts itself is invalid wherever it is used. */
    if (plan_refusal(*ret) == PLAN_PROFILE_CONTRADICTS) {
        for (unsigned i = 0; i < (*ret)->sizing.nproblems; i++)
            if ((*ret)->sizing.problems[i].in_profile) /* only limits.shmall can contradict */
                fprintf(stderr, "%s:%u:%u: error: %s\n", profile->path, profile->shmall.mark.line,
                        profile->shmall.mark.col, (*ret)->sizing.problems[i].text);
        plan_free(*ret);
        *ret = NULL;
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int cli_with_plan(const struct cli_options *o, bool force,
                  int (*use)(const struct cli_options *o, const struct plan *plan))
{
    struct profile *profile = NULL;
    struct plan *plan = NULL;
    int code = cli_load_profile(o, &profile);

    if (code == EXIT_OK)
        code = cli_build_plan(profile, force, NULL, &plan, NULL);
    if (code == EXIT_OK)
        code = use(o, plan);
    plan_free(plan);
    profile_free(profile);
    return code;
}

static void log_outcome(const struct apply_outcome *out)
{
    if (out->stale_temps_removed > 0)
        log_info("removed %d temporary file(s) a killed run left next to %s", out->stale_temps_removed,
                 out->dropin_path);
    if (out->probe_ran && out->probe.key_note[0])
        log_warn("test allocation: %s", out->probe.key_note);
    if (out->result == APPLY_FAILED) {
        log_error("%s", out->error);
        if (out->restored[0])
            log_error("restored: %s", out->restored);
    } else if (out->result == APPLY_NOT_APPLICABLE) {
        log_warn("runtime not applicable here: %s; nothing changed", out->runtime_skip_reason);
    }
}

void cli_run_transaction(struct cli_run *run, const struct apply_options *opts)
{
    apply_run(run->plan, opts, &run->out);
    run->out_known = true;
    log_outcome(&run->out);
}

void cli_print_failure(const struct apply_outcome *out)
{
    if (out->result != APPLY_FAILED)
        return;
    printf("  failed: %s\n", out->error);
    if (out->restored[0])
        printf("  restored: %s\n", out->restored);
}

void *cli_run_new(size_t size, const struct cli_options *o, const struct cli_transaction *tx, const char *command)
{
    struct cli_run *run = calloc(1, size);

    if (run) {
        run->o = o;
        run->tx = tx;
        run->command = command;
        run->start_ms = clock_monotonic_ms();
    }
    return run;
}

void cli_refuse(struct cli_run *run, const char *code, const char *step, const char *fmt, ...)
{
    va_list ap;

    run->refused = true;
    run->error.code = code;
    run->error.step = step;
    if (!fmt)
        return;
    va_start(ap, fmt);
    run->error.message = say_error_v(fmt, ap);
    va_end(ap);
}

bool cli_run_lock(struct cli_run *run)
{
    int r = cli_lock(LOCK_DEFAULT_PATH, &run->lock, &run->error.message);

    if (r < 0)
        cli_refuse(run, r == -EWOULDBLOCK ? REPORT_ERR_LOCK_TIMEOUT : APPLY_ERR_IO, "lock", NULL);
    return r == 0;
}

bool cli_run_plan(struct cli_run *run, bool force)
{
    int code = cli_build_plan(run->profile, force, run->tx->apply.root, &run->plan, &run->error.message);

    run->profile_invalid = code == EXIT_USAGE;
    if (code != EXIT_OK)
        cli_refuse(run, APPLY_ERR_HOST_UNREADABLE, "plan", NULL);
    return code == EXIT_OK;
}

bool cli_run_succeeded(const struct cli_run *run)
{
    return run->out_known && (run->out.result == APPLY_CHANGED || run->out.result == APPLY_UNCHANGED);
}

void cli_run_state(const struct cli_run *run, struct state_run *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->known = true;
    ret->end = (uint64_t)time(NULL);
    ret->duration_ms = clock_monotonic_ms() - run->start_ms;
    ret->probe_passed = run->out_known && run->out.probe_ran ? run->out.probe.passed : -1;
    (void)snprintf(ret->result, sizeof(ret->result), "%s", run->result);
}

json_object *cli_run_report(const struct cli_run *run)
{
    struct report_run rr = {
        .command = run->command,
        .result = run->result,
        .profile = run->profile,
        .plan = run->plan,
        .conflicts = run->conflicts,
        .out = run->out_known ? &run->out : NULL,
        .error = run->error.code ? &run->error : NULL,
        .drift = run->drift,
        .corrective_change = run->drift && run->drift->count > 0 && run->out_known &&
                             run->out.result == APPLY_CHANGED,
        .duration_ms = clock_monotonic_ms() - run->start_ms,
        .resolve_fqdn = run->profile->report.url && !run->tx->no_report && !run->tx->defer_report,
    };

    lastapply_sha256_on_disk(run->plan ? run->plan->dropin_path : run->profile->dropin, rr.dropin_sha256_on_disk);
    return report_data(&rr);
}

void cli_run_conclude(struct cli_run *run, void (*record)(struct cli_run *), void (*print)(const struct cli_run *))
{
    if (record)
        record(run);
    if (run->o->output == CLI_OUTPUT_JSON) {
        /* The very document a report carries as its data. */
        json_object *data = cli_run_report(run);
        printf("%s\n", jsonout_text(data, true));
        json_object_put(data);
    } else if (print) {
        print(run);
    } else {
        printf("shmprov %s: %s\n  %s: %s\n", run->command, run->result, run->error.code, run->error.message);
    }
    lock_release(run->lock);
    run->lock = NULL;
}

void cli_run_free(struct cli_run *run)
{
    lock_release(run->lock);
    plan_free(run->plan);
    profile_free(run->profile);
    free(run->error.message);
}

void cli_send_asked_report(const struct report_run *rr)
{
    if (rr->profile->report.url)
        runreport_send(rr->profile, report_data(rr), false);
    else
        log_warn("--report: the profile sets no report.url; nothing sent");
}

/* As coreutils' close_stdout: a result that never reached its reader (a
 * full disk, a closed pipe, /dev/full) is a failure, not a success. */
static int finish_stdout(int code)
{
    int r = streams_finish_stdout();

    if (r == 0)
        return code;
    log_error("cannot write the result to standard output: %s", strerror(-r));
    return code == EXIT_OK ? EXIT_FAILURE_RUNTIME : code;
}

int cli_main(int argc, char **argv)
{
    struct cli_options o = { .output = CLI_OUTPUT_TEXT };
    const struct cli_command *cmd = NULL;
    int r;

    streams_setup();
    r = parse_argv(argc, argv, &o, &cmd);
    if (r == CONTINUE && cmd)
        return finish_stdout(cmd->exec(&o));
    /* --help and --version wrote to stdout; a usage error did not. */
    return r == EXIT_OK ? finish_stdout(EXIT_OK) : EXIT_USAGE;
}

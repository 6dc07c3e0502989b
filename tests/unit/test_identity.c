/* The host's identity for reports: the os-release parser on fixed text, the
 * CloudEvents source on scratch files, the FQDN rules in a private UTS
 * namespace (isolate.h: skipped when not root, failed when root cannot). */
#include <sys/stat.h>
#include <sys/utsname.h>

#include "hash.h"
#include "helpers.h"
#include "identity.h"
#include "isolate.h"
#include "params.h"

/* ---- os-release ------------------------------------------------------- */

/* One key's value, as the shell would read it; "" on every failure. */
static const struct {
    const char *text, *key;
    int ret;
    const char *value;
} value_cases[] = {
    /* Quotes: single, double, and parts run together. Inside '...' a
     * backslash and a " are themselves. */
    { "ID='fedora'\n", "ID", 0, "fedora" },
    { "ID=\"ub\"'un'tu\n", "ID", 0, "ubuntu" },
    { "ID='a\\b\"c'\n", "ID", 0, "a\\b\"c" },
    { "NAME=\"Red Hat Enterprise Linux\"\n", "NAME", 0, "Red Hat Enterprise Linux" },
    /* In "...": \" \\ \$ \` are the character; \q stays two characters. */
    { "ID=\"a\\\"b\\\\c\\$d\\`e\\qf\"\n", "ID", 0, "a\"b\\c$d`e\\qf" },
    /* Unquoted, a backslash makes the next character literal. */
    { "ID=a\\ b\\#c\n", "ID", 0, "a b#c" },
    /* A backslash-newline joins the lines, quoted or not. */
    { "ID=\"ab\\\ncd\"\n", "ID", 0, "abcd" },
    { "ID=ab\\\ncd\n", "ID", 0, "abcd" },
    /* A '#' starts a comment only at the start of a word. */
    { "ID=a#b\n", "ID", 0, "a#b" },
    { "ID=\"15.5\"#b\n", "ID", 0, "15.5#b" },
    { "ID=#b\n", "ID", 0, "#b" },
    /* Missing and empty; a prefix or suffix of the key is another key. */
    { "", "ID", -ENOENT, "" },
    { "ID=\n", "ID", -EINVAL, "" },
    { "ID=\"\"\n", "ID", -EINVAL, "" },
    { "ID_LIKE=debian\nXID=1\n", "ID", -ENOENT, "" },
    /* The last assignment wins, even when it is unusable (the shell would
     * use it); a line that is not an assignment changes nothing. */
    { "ID=first\nID=second\n", "ID", 0, "second" },
    { "ID=first\nID=\"a\tb\"\n", "ID", -EINVAL, "" },
    { "ID=first\nID=two words\n", "ID", 0, "first" },
    /* Garbage is skipped. */
    { "this is not an assignment\n=value\n1ID=digit-first\nID =spaced\nexport ID=exported\nID-X=dash\n"
      "\xff\xfe\x01\x02 binary\nID=\"unclosed\n",
      "ID", -ENOENT, "" },
    { "junk\nID=ok\n\"dangling quote\nVERSION_ID=1\n", "ID", 0, "ok" },
    { "junk\nID=ok\n\"dangling quote\nVERSION_ID=1\n", "VERSION_ID", 0, "1" },
    /* A quoted newline is not a new line: as in the shell, ID=evil is
     * inside PRETTY_NAME's quotes. A value that holds a newline is
     * refused, not cut; an unclosed quote swallows the rest of the file. */
    { "PRETTY_NAME=\"a\nID=evil\"\nID=good\n", "ID", 0, "good" },
    { "X='a\nID=evil\n'\n", "ID", -ENOENT, "" },
    { "ID=\"two\nlines\"\n", "ID", -EINVAL, "" },
    { "X=\"open\nID=inside\n", "ID", -ENOENT, "" },
};

Test(os_release, values)
{
    for (size_t i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
        char buf[64] = "x";

        cr_expect_eq(identity_os_release_value(value_cases[i].text, value_cases[i].key, buf, sizeof(buf)),
                     value_cases[i].ret, "case %zu", i);
        cr_expect_str_eq(buf, value_cases[i].value, "case %zu", i);
    }
}

/* ID and VERSION_ID together, as identity_read() takes them. */
static const struct {
    const char *text;
    int found;
    const char *id, *version;
} release_cases[] = {
    { "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n"
      "VERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n",
      2, "debian", "12" },
    /* Comments, blank lines and indentation. */
    { "# ID=commented\n\n   \t\n  ID=opensuse-leap   # the distribution\n"
      "VERSION_ID=\"15.5\"\t# a comment after a quote\n",
      2, "opensuse-leap", "15.5" },
    { "NAME=Linux\n", 0, "", "" },
    /* Rolling releases (Arch) have no VERSION_ID: unknown, not an error. */
    { "ID=arch\nBUILD_ID=rolling\n", 1, "arch", "" },
};

Test(os_release, id_and_version_id)
{
    for (size_t i = 0; i < ELEMENTSOF(release_cases); i++) {
        char id[64] = "x", version[64] = "x";

        cr_expect_eq(identity_parse_os_release(release_cases[i].text, id, sizeof(id), version, sizeof(version)),
                     release_cases[i].found, "case %zu", i);
        cr_expect_str_eq(id, release_cases[i].id, "case %zu", i);
        cr_expect_str_eq(version, release_cases[i].version, "case %zu", i);
    }
}

Test(os_release, long_lines)
{
    size_t junk = 100 * 1024;
    char *text = malloc(junk + 256), buf[64];
    char value[80];

    cr_assert_not_null(text);
    memset(text, 'x', junk);
    strcpy(text + junk, "\nID=after-a-long-line\n");
    cr_expect_eq(identity_os_release_value(text, "ID", buf, sizeof(buf)), 0);
    cr_expect_str_eq(buf, "after-a-long-line");

    /* 63 characters fit in 64 bytes; 64 do not, and are not cut. */
    memset(value, 'a', 63);
    value[63] = '\0';
    snprintf(text, junk, "VERSION_ID=%s\n", value);
    cr_expect_eq(identity_os_release_value(text, "VERSION_ID", buf, sizeof(buf)), 0);
    cr_expect_eq(strlen(buf), 63);
    snprintf(text, junk, "VERSION_ID=\"%sb\"\n", value);
    cr_expect_eq(identity_os_release_value(text, "VERSION_ID", buf, sizeof(buf)), -E2BIG);
    cr_expect_str_eq(buf, "");

    memset(text, 'y', junk);
    memcpy(text, "ID=", 3);
    text[junk] = '\0';
    cr_expect_eq(identity_os_release_value(text, "ID", buf, sizeof(buf)), -E2BIG);
    free(text);
}

/* ---- identity_read: arch and os-release -------------------------------- */

static void make_scratch(void)
{
    scratch_make();
    umask(022);
}

static char *in_scratch(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", scratch(), name);
    return p;
}

TestSuite(identity, .init = make_scratch, .fini = scratch_remove);

Test(identity, read_uses_the_test_os_release_and_uname)
{
    struct host_identity h;
    struct utsname uts;

    put_file(scratch(), "os-release", "ID=\"rhel\"\nVERSION_ID='9.4'\n");
    cr_assert_eq(setenv("SHMPROV_TEST_OS_RELEASE", in_scratch("os-release"), 1), 0);
    cr_assert_eq(identity_read(&h, false), 0);
    cr_expect_str_eq(h.os_id, "rhel");
    cr_expect_str_eq(h.os_version_id, "9.4");
    cr_assert_eq(uname(&uts), 0);
    cr_expect_str_eq(h.arch, uts.machine);
    cr_expect(!h.fqdn_known || strchr(h.fqdn, '.'), "an FQDN has a dot: '%s'", h.fqdn);

    /* The override names the only file read: no fallback to the host's. */
    cr_assert_eq(setenv("SHMPROV_TEST_OS_RELEASE", in_scratch("missing"), 1), 0);
    cr_assert_eq(identity_read(&h, false), 0);
    cr_expect_str_eq(h.os_id, "");
    cr_expect_str_eq(h.os_version_id, "");
}

/* ---- FQDN --------------------------------------------------------------- */

Test(fqdn, plausible_names)
{
    static const char *const good[] = { "db1.example.net", "a.b", "xn--bcher-kva.example" };
    static const char *const bad[] = { "db1", "", ".example.net", "db1.", "localhost", "localhost.localdomain",
                                       "db1.localdomain", "db1.localhost", "db 1.example.net", "db1.example.net\n",
                                       "caf\xc3\xa9.example.net" };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_expect(identity_fqdn_plausible(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(identity_fqdn_plausible(bad[i]), "%s", bad[i]);
}

/* A node name of our choosing needs a UTS namespace of our own. */
Test(fqdn, from_the_nodename)
{
    static const struct {
        const char *nodename;
        bool resolve;
        const char *fqdn; /* "": unknown */
    } cases[] = {
        { "db1.example.net", false, "db1.example.net" },
        { "db1-shmprov-test", false, "" },
        { "localhost.localdomain", false, "" },
        /* Resolving "localhost" gives "localhost": still unknown. */
        { "localhost", true, "" },
    };
    struct host_identity h;

    isolate(CLONE_NEWUTS, "sets a node name");
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        cr_assert_eq(sethostname(cases[i].nodename, strlen(cases[i].nodename)), 0);
        cr_assert_eq(identity_read(&h, cases[i].resolve), 0);
        cr_expect_eq(h.fqdn_known, cases[i].fqdn[0] != '\0', "%s", cases[i].nodename);
        cr_expect_str_eq(h.fqdn, cases[i].fqdn, "%s", cases[i].nodename);
    }
}

/* ---- the source --------------------------------------------------------- */

/* sha256("shmprov report source v1\n0123456789abcdef0123456789abcdef"),
 * first 32 hex digits: what the v1 report_source() gave for this id. */
#define PINNED_ID "0123456789abcdef0123456789abcdef"
#define PINNED_SOURCE "urn:shmprov:host:e62a278505e017d12313639640d91b9a"

static void expect_source_form(const char *s)
{
    cr_expect_eq(strlen(s), IDENTITY_SOURCE_LEN, "'%s'", s);
    cr_expect_eq(strncmp(s, "urn:shmprov:host:", 17), 0, "'%s'", s);
    cr_expect_eq(strspn(s + 17, "0123456789abcdef"), 32, "'%s'", s);
}

Test(identity, machine_id_gives_the_v1_hash)
{
    char source[IDENTITY_SOURCE_LEN + 1];
    struct stat st;

    put_file(scratch(), "machine-id", PINNED_ID "\n");
    cr_expect_eq(identity_source(in_scratch("machine-id"), in_scratch("state"), source),
                 IDENTITY_FROM_MACHINE_ID);
    cr_expect_str_eq(source, PINNED_SOURCE);
    cr_expect_eq(stat(in_scratch("state"), &st), -1, "the state directory is not touched");

    put_file(scratch(), "machine-id", PINNED_ID); /* no newline */
    cr_expect_eq(identity_source(in_scratch("machine-id"), in_scratch("state"), source), 0);
    cr_expect_str_eq(source, PINNED_SOURCE);
}

Test(identity, unusable_machine_ids_fall_back)
{
    static const char *const bad[] = { "", "uninitialized\n", "00000000000000000000000000000000\n",
                                       "0123456789ABCDEF0123456789ABCDEF\n", "0123456789abcdef0123456789abcde\n",
                                       PINNED_ID "0\n", PINNED_ID "\n\n" };
    char source[IDENTITY_SOURCE_LEN + 1];

    put_file(scratch(), "host-id", PINNED_ID "\n");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_file(scratch(), "machine-id", bad[i]);
        cr_expect_eq(identity_source(in_scratch("machine-id"), scratch(), source),
                     IDENTITY_FROM_HOST_ID, "machine-id '%s'", bad[i]);
        /* host-id is hashed exactly as a machine id would be. */
        cr_expect_str_eq(source, PINNED_SOURCE);
    }
}

Test(identity, host_id_is_created_once)
{
    char first[IDENTITY_SOURCE_LEN + 1], second[IDENTITY_SOURCE_LEN + 1], *buf = NULL, salted[64], hex[65];
    char *state = in_scratch("var/lib/shmprov"), *path = in_scratch("var/lib/shmprov/host-id"), cmd[320];
    size_t len;
    struct stat st;

    cr_assert_eq(identity_source(in_scratch("no-machine-id"), state, first), IDENTITY_FROM_HOST_ID);
    expect_source_form(first);
    cr_assert_eq(stat(state, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0755);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect(S_ISREG(st.st_mode));
    cr_expect_eq(st.st_mode & 07777, 0644);
    cr_assert_eq(fsutil_read_file(path, 256, true, &buf, &len, NULL), 0);
    cr_expect_eq(len, 33);
    cr_expect_eq(strspn(buf, "0123456789abcdef"), 32);
    cr_expect_eq(buf[32], '\n');
    snprintf(salted, sizeof(salted), "shmprov report source v1\n%.32s", buf);
    hash_sha256_hex(salted, strlen(salted), hex);
    cr_expect_eq(strncmp(first + 17, hex, 32), 0, "the source is the hash of host-id, not host-id");
    cr_expect_neq(strncmp(first + 17, buf, 32), 0);

    cr_assert_eq(identity_source(in_scratch("no-machine-id"), state, second), IDENTITY_FROM_HOST_ID);
    cr_expect_str_eq(second, first);
    /* Only host-id is left: no staging or temporary file. */
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A %s)\" = host-id", state);
    cr_expect_eq(system(cmd), 0, "%s holds more than host-id", state);
    free(buf);
}

Test(identity, racing_first_runs_agree)
{
    enum { RUNS = 8 };
    int fds[RUNS][2];
    pid_t pids[RUNS];
    char want[IDENTITY_SOURCE_LEN + 1] = "";

    for (int i = 0; i < RUNS; i++) {
        cr_assert_eq(pipe(fds[i]), 0);
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            char s[IDENTITY_SOURCE_LEN + 1];
            int r = identity_source(NULL, in_scratch("state"), s);
            _exit(r == IDENTITY_FROM_HOST_ID && write(fds[i][1], s, sizeof(s)) == (ssize_t)sizeof(s) ? 0 : 1);
        }
        close(fds[i][1]);
    }
    for (int i = 0; i < RUNS; i++) {
        char got[IDENTITY_SOURCE_LEN + 1];
        int status;
        cr_assert_eq(read(fds[i][0], got, sizeof(got)), (ssize_t)sizeof(got));
        close(fds[i][0]);
        cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!want[0])
            memcpy(want, got, sizeof(got));
        cr_expect_str_eq(got, want, "run %d saw another host id", i);
    }
}

Test(identity, unusable_host_id_is_left_alone)
{
    char source[IDENTITY_SOURCE_LEN + 1], *buf = NULL;
    size_t len;

    put_file(scratch(), "host-id", "not an id\n");
    cr_expect_eq(identity_source(NULL, scratch(), source), -EINVAL);
    expect_source_form(source);
    cr_assert_eq(fsutil_read_file(in_scratch("host-id"), 256, true, &buf, &len, NULL), 0);
    cr_expect_str_eq(buf, "not an id\n");
    free(buf);

    /* Never through a symlink. */
    cr_assert_eq(unlink(in_scratch("host-id")), 0);
    put_file(scratch(), "elsewhere", PINNED_ID "\n");
    cr_assert_eq(symlink(in_scratch("elsewhere"), in_scratch("host-id")), 0);
    cr_expect_eq(identity_source(NULL, scratch(), source), -ELOOP);
    cr_expect_str_neq(source, PINNED_SOURCE);
}

static void expect_per_run_ids(const char *state, int want_rc)
{
    char a[IDENTITY_SOURCE_LEN + 1], b[IDENTITY_SOURCE_LEN + 1];
    int r;

    r = identity_source(in_scratch("no-machine-id"), state, a);
    cr_expect_lt(r, 0);
    if (want_rc)
        cr_expect_eq(r, want_rc, "%s", strerror(-r));
    cr_expect_lt(identity_source(in_scratch("no-machine-id"), state, b), 0);
    expect_source_form(a);
    expect_source_form(b);
    cr_expect_str_neq(a, b, "a per-run id must differ between runs, never a shared one");
}

Test(identity, unwritable_state_dir_gives_a_per_run_id)
{
    /* Below a regular file no directory can be made, even by root. */
    put_file(scratch(), "file", "");
    expect_per_run_ids(in_scratch("file/state"), -ENOTDIR);
    expect_per_run_ids("", -EINVAL);
    expect_per_run_ids(NULL, -EINVAL);

    /* A read-only directory stops only those who are not root. */
    if (geteuid() != 0) {
        cr_assert_eq(mkdir(in_scratch("ro"), 0555), 0);
        expect_per_run_ids(in_scratch("ro"), -EACCES);
    }
}

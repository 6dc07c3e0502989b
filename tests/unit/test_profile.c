/* The parser on inline documents. Every bad-profile message an operator can
 * see is also pinned by tests/fixtures/bad via the real binary. */
#include "helpers.h"
#include "params.h"

static const char full_profile[] =
    "version: 1\n"
    "host:\n"
    "  ram_tier: large\n"
    "  workload: bigdata\n"
    "policy: raise-only\n"
    "limits:\n"
    "  shmmax: 60%\n"
    "  shmall: 16GiB\n"
    "  shmmni: 8192\n"
    "dropin: /run/sysctl.d/70-shm.conf\n"
    "report:\n"
    "  url: https://collector.example.net/v1/events\n"
    "  token_file: /etc/shmprov/token\n"
    "  ca_file: /etc/shmprov/ca.pem\n"
    "  client_cert: /etc/shmprov/client.pem\n"
    "  client_key: /etc/shmprov/client.key\n"
    "  timeout: 5\n"
    "  spool_dir: /var/spool/shmprov\n"
    "metrics:\n"
    "  textfile: /var/lib/prometheus/node-exporter/shmprov.prom\n";

Test(profile, every_key)
{
    struct profile *p = parse_profile_or_die(full_profile);

    cr_expect_eq(p->ram_tier, PROFILE_TIER_LARGE);
    cr_expect_eq(p->workload, PROFILE_WORKLOAD_BIGDATA);
    cr_expect_eq(p->policy, PROFILE_POLICY_RAISE_ONLY);
    cr_expect(p->shmmax.set);
    cr_expect_eq(p->shmmax.size.kind, SIZE_PERCENT);
    cr_expect_eq(p->shmmax.size.value, 60);
    cr_expect_eq(p->shmmax.mark.line, 7);
    cr_expect_eq(p->shmmax.mark.col, 11);
    cr_expect(p->shmall.set);
    cr_expect_not(p->shmall.in_pages);
    cr_expect_eq(p->shmall.size.value, UINT64_C(17179869184));
    cr_expect_eq(p->shmmni.size.value, 8192);
    cr_expect_str_eq(p->dropin, "/run/sysctl.d/70-shm.conf");
    cr_expect_str_eq(p->report.url, "https://collector.example.net/v1/events");
    cr_expect_str_eq(p->report.token_file, "/etc/shmprov/token");
    cr_expect_str_eq(p->report.ca_file, "/etc/shmprov/ca.pem");
    cr_expect_str_eq(p->report.client_cert, "/etc/shmprov/client.pem");
    cr_expect_str_eq(p->report.client_key, "/etc/shmprov/client.key");
    cr_expect_eq(p->report.timeout_s, 5);
    cr_expect_str_eq(p->report.spool_dir, "/var/spool/shmprov");
    cr_expect_str_eq(p->metrics_textfile, "/var/lib/prometheus/node-exporter/shmprov.prom");
    profile_free(p);
}

Test(profile, defaults)
{
    struct profile *p = parse_profile_or_die("version: 1\n");

    cr_expect_eq(p->ram_tier, PROFILE_TIER_AUTO);
    cr_expect_eq(p->workload, PROFILE_WORKLOAD_GENERAL);
    cr_expect_eq(p->policy, PROFILE_POLICY_ENFORCE);
    cr_expect_not(p->shmmax.set);
    cr_expect_not(p->shmall.set);
    cr_expect_not(p->shmmni.set);
    cr_expect_str_eq(p->dropin, PROFILE_DEFAULT_DROPIN);
    cr_expect_null(p->report.url);
    cr_expect_eq(p->report.timeout_s, 20);
    cr_expect_str_eq(p->report.spool_dir, "/var/lib/shmprov/spool");
    cr_expect_null(p->metrics_textfile);
    cr_expect_eq(p->nlabels, 0);
    profile_free(p);
}

Test(profile, bare_shmall_is_pages_and_flow_style_works)
{
    struct profile *p = parse_profile_or_die("{version: 1, limits: {shmall: 4194304, shmmax: \"4 GiB\"}}");

    cr_expect(p->shmall.in_pages);
    cr_expect_eq(p->shmall.size.value, 4194304);
    cr_expect_eq(p->shmmax.size.value, UINT64_C(4294967296));
    profile_free(p);
}

/* Parses yaml, which must fail, and compares its messages, each as
 * "LINE:COL MESSAGE\n", with want. */
static void expect_errors(const char *yaml, const char *want)
{
    struct profile_diags d;
    struct profile *p = NULL;
    char *got = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&got, &len);

    profile_diags_init(&d, "x.yaml");
    cr_assert_eq(profile_parse(yaml, strlen(yaml), "x.yaml", &d, &p), -EINVAL, "accepted: %s", yaml);
    cr_expect_null(p);
    for (size_t i = 0; i < d.count; i++)
        fprintf(f, "%u:%u %s\n", d.items[i].line, d.items[i].col, d.items[i].message);
    fclose(f);
    cr_expect_str_eq(got, want, "for %s", yaml);
    free(got);
    profile_diags_free(&d);
}

#define URL_RULE                                                                                             \
    "'report.url' must be an https:// URL without user info (plain http:// only to 127.0.0.1, localhost or " \
    "[::1]), not "
#define LABEL_RULE "(a lowercase letter, then up to 62 lowercase letters, digits, '_', '.' or '-')"
#define PROM_RULE                                                                                            \
    "must name a '.prom' file (node_exporter's textfile collector reads nothing else): up to 200 letters, " \
    "digits, '.', '_' or '-', the first not a '.'; not "

static const struct {
    const char *yaml, *want;
} rejected[] = {
    /* Every error of a file at once, in file order. */
    { "version: 1\nhost:\n  ram_tier: huge\n  colour: blue\nlimits:\n  shmmax: 16GB\npolicy: lax\n",
      "3:13 'host.ram_tier' must be one of auto, small, medium, large, not 'huge'\n"
      "4:3 unknown key 'colour' in 'host' (known: ram_tier, workload)\n"
      "6:11 'limits.shmmax': ambiguous unit: write KiB/MiB/GiB/TiB or K/M/G/T (shmprov units are powers of "
      "1024): '16GB'\n"
      "7:9 'policy' must be one of enforce, raise-only, not 'lax'\n" },
    /* One message per kind, not one per alias: the parser never expands. */
    { "version: 1\n"
      "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
      "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
      "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
      "2:1 unknown key 'a' (known: version, host, policy, limits, dropin, conflicts, report, segments, labels, "
      "metrics)\n"
      "2:4 YAML anchors (&name) are not allowed in a profile\n"
      "3:1 unknown key 'b' (known: version, host, policy, limits, dropin, conflicts, report, segments, labels, "
      "metrics)\n"
      "3:8 YAML aliases (*name) are not allowed in a profile\n"
      "4:1 unknown key 'c' (known: version, host, policy, limits, dropin, conflicts, report, segments, labels, "
      "metrics)\n" },
    { "version: 1\nreport: {url: \"http://127.0.0.1:80@collector.example.net/v1/events\"}\n",
      "2:15 " URL_RULE "'http://127.0.0.1:80@collector.example.net/v1/events'\n" },
    { "version: 1\nreport: {url: \"https://user:secret@collector.example.net/\"}\n",
      "2:15 " URL_RULE "'https://user:secret@collector.example.net/'\n" },
    { "version: 1\nreport: {url: \"http://127.0.0.1.example.net/\"}\n",
      "2:15 " URL_RULE "'http://127.0.0.1.example.net/'\n" },
    { "version: 1\nreport: {url: \"http://localhost:8x/\"}\n", "2:15 " URL_RULE "'http://localhost:8x/'\n" },
    { "version: 1\nreport: {url: \"ftp://127.0.0.1/\"}\n", "2:15 " URL_RULE "'ftp://127.0.0.1/'\n" },
    { "version: 1\nreport: {url: \"https://\"}\n", "2:15 " URL_RULE "'https://'\n" },
    { "version: 1\nreport: {token_file: \"/..\"}\n", "2:22 'report.token_file' must not contain '..'\n" },
    { "version: 1\n"
      "segments:\n"
      "  persistent_keys: [0, 0x123456789, 4294967296, -2147483649, 0x12, 18, 0x1g, 012x, [1]]\n",
      "3:21 'segments.persistent_keys': key 0 is IPC_PRIVATE, shared by every private segment; it cannot mark "
      "one: '0'\n"
      "3:24 'segments.persistent_keys': not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1): "
      "'0x123456789'\n"
      "3:37 'segments.persistent_keys': out of range for a System V key (32 bits): '4294967296'\n"
      "3:49 'segments.persistent_keys': out of range for a System V key (32 bits): '-2147483649'\n"
      "3:68 'segments.persistent_keys': key 0x00000012 is listed twice\n"
      "3:72 'segments.persistent_keys': not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1): "
      "'0x1g'\n"
      "3:78 'segments.persistent_keys': not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1): "
      "'012x'\n"
      "3:84 'segments.persistent_keys[]' must be a value, not a list\n" },
    { "version: 1\nsegments:\n  persistent_keys: 0x12\n",
      "3:20 'segments.persistent_keys' must be a list of keys such as [0x0052e2c1], not a scalar\n" },
    { "version: 1\n"
      "labels:\n"
      "  Role: database\n"
      "  9lives: x\n"
      "  a b: x\n"
      "  \"\": x\n"
      "  env: [prod]\n"
      "  site: {eu: 1}\n"
      "  owner:\n"
      "  team: ~\n"
      "  shift: null\n"
      "  env: again\n"
      "  ? [a]\n"
      "  : x\n"
      "  x: \"tab\\there\"\n"
      "  y: \"nl\\n\"\n"
      "  z: \"del\\x7f\"\n"
      "  w: \"c1\\u0085\"\n"
      "  v: |\n"
      "    block\n",
      "3:3 label name 'Role' is not valid: label names are lowercase " LABEL_RULE "\n"
      "4:3 label name '9lives' is not valid: it must start with a letter " LABEL_RULE "\n"
      "5:3 label name 'a b' is not valid: a space is not allowed " LABEL_RULE "\n"
      "6:3 label name '' is not valid: it is empty " LABEL_RULE "\n"
      "7:8 'labels.env' must be a string, not a list\n"
      "8:9 'labels.site' must be a string, not a mapping\n"
      "9:9 'labels.owner' has no value; write '' for an empty one\n"
      "10:9 'labels.team' must be a string, not YAML null ('~'); quote it to mean the text\n"
      "11:10 'labels.shift' must be a string, not YAML null ('null'); quote it to mean the text\n"
      "12:3 duplicate key 'labels.env' (first at line 7)\n"
      "13:5 a label name must be a word, not a list\n"
      "15:6 'labels.x' must not contain control characters (U+0009)\n"
      "16:6 'labels.y' must not contain control characters (U+000A)\n"
      "17:6 'labels.z' must not contain control characters (U+007F)\n"
      "18:6 'labels.w' must not contain control characters (U+0085)\n"
      "19:6 'labels.v' must not contain control characters (U+000A)\n" },
    /* Messages never echo control characters. */
    { "version: 1\nlabels:\n  \"a\\x01b\": \"\\e[31m\"\n  \"c\\u009b\": x\n",
      "3:3 label name 'a?b' is not valid: a control character is not allowed " LABEL_RULE "\n"
      "3:13 'labels.a?b' must not contain control characters (U+001B)\n"
      "4:3 label name 'c?\?' is not valid: a non-ASCII character is not allowed " LABEL_RULE "\n" },
    { "version: 1\nlabels: [role, db]\n",
      "2:9 'labels' must be a mapping of names to values (role: database), not a list\n" },
    { "version: 1\nlabels: role=db\n",
      "2:9 'labels' must be a mapping of names to values (role: database), not a scalar\n" },
    { "version: 1\nlabels:\n", "2:8 'labels' must be a mapping of names to values (role: database), not empty\n" },
    { "version: 1\nlabels: {a: v, b: v, c: v, d: v, e: v, f: v, g: v, h: v, i: v, j: v, k: v, l: v, m: v, n: v, o: v, "
      "p: v, q: v, r: v}\n",
      "2:106 'labels' has 18 entries; at most 16 are allowed\n" },
    { "version: 1\nmetrics: {textfile: shmprov.prom}\n",
      "2:21 'metrics.textfile' must be an absolute path, not 'shmprov.prom'\n" },
    { "version: 1\nmetrics: {textfile: /var/lib/../../etc/x.prom}\n",
      "2:21 'metrics.textfile' must not contain '..'\n" },
    { "version: 1\nmetrics: {textfile: \"/var/lib/a b.prom\"}\n",
      "2:21 'metrics.textfile' must not contain white space or control characters\n" },
    { "version: 1\nmetrics: {directory: /var/lib/prometheus}\n",
      "2:11 unknown key 'directory' in 'metrics' (known: textfile)\n" },
    { "version: 1\nmetrics: /x.prom\n", "2:10 'metrics' must be a mapping, not a scalar\n" },
    { "version: 1\nmetrics: {textfile: /var/lib/shmprov.txt}\n",
      "2:21 'metrics.textfile' " PROM_RULE "'/var/lib/shmprov.txt'\n" },
    { "version: 1\nmetrics: {textfile: /var/lib/.prom}\n", "2:21 'metrics.textfile' " PROM_RULE "'/var/lib/.prom'\n" },
};

ParameterizedTestParameters(profile, rejected)
{
    INDEXES(rejected);
}

ParameterizedTest(size_t *i, profile, rejected)
{
    expect_errors(rejected[*i].yaml, rejected[*i].want);
}

/* Quoted keys, JSON style and a UTF-8 byte-order mark are YAML too, as are
 * plain http:// to loopback, a path of one character and no labels. */
static const char *const accepted[] = {
    "{\"version\": 1, \"policy\": \"raise-only\"}",
    "\xef\xbb\xbfversion: 1\npolicy: raise-only\n",
    "version: 1\nreport: {url: \"http://127.0.0.1:8080/e\"}\n",
    "version: 1\nreport: {url: \"http://[::1]\"}\n",
    "version: 1\nreport: {token_file: \"/\"}\n",
    "version: 1\nreport: {token_file: \"/a\"}\n",
    "version: 1\nlabels: {}\n",
};

ParameterizedTestParameters(profile, accepted)
{
    INDEXES(accepted);
}

ParameterizedTest(size_t *i, profile, accepted)
{
    struct profile *p = parse_profile_or_die(accepted[*i]);

    if (strstr(accepted[*i], "raise-only"))
        cr_expect_eq(p->policy, PROFILE_POLICY_RAISE_ONLY);
    cr_expect_eq(p->nlabels, 0);
    profile_free(p);
}

Test(profile, diagnostics_print_file_line_col)
{
    struct profile_diags d;
    char *text = NULL;
    size_t len = 0;
    FILE *saved = stderr;

    profile_diags_init(&d, "/etc/shmprov/profile.yaml");
    cr_assert_eq(profile_diags_add(&d, 3, 7, "bad %s", "thing"), 0);
    stderr = open_memstream(&text, &len);
    profile_diags_print(&d);
    fclose(stderr);
    stderr = saved;
    cr_expect_str_eq(text, "/etc/shmprov/profile.yaml:3:7: error: bad thing\n");
    free(text);
    profile_diags_free(&d);
}

/* profiles/NAME.yaml of the source tree, parsed. */
static struct profile *parse_example(const char *name)
{
    char path[512], *buf = NULL;
    struct profile *p;
    size_t len;

    (void)snprintf(path, sizeof(path), "%s/profiles/%s.yaml", SHMPROV_SOURCE_DIR, name);
    cr_assert_eq(fsutil_read_file(path, 1 << 20, true, &buf, &len, NULL), 0, "%s", path);
    p = parse_profile_or_die(buf);
    free(buf);
    return p;
}

Test(profile, builtin_is_profiles_default_yaml)
{
    struct profile *p = NULL, *file = parse_example("default");
    struct profile_diags d;

    profile_diags_init(&d, PROFILE_BUILTIN_NAME);
    cr_assert_eq(profile_load_builtin(&d, &p), 0);
    cr_assert_not_null(p);
    cr_assert_not_null(file);
    cr_expect_str_eq(p->sha256_hex, file->sha256_hex,
                     "the built-in default must be profiles/default.yaml byte for byte");
    cr_expect(p->builtin);
    cr_expect_eq(p->policy, PROFILE_POLICY_ENFORCE);
    profile_free(file);
    profile_free(p);
    profile_diags_free(&d);
}

Test(profile, example_profiles_parse)
{
    static const struct {
        const char *name;
        enum ram_tier tier;
        enum workload workload;
    } examples[] = {
        { "default", PROFILE_TIER_AUTO, PROFILE_WORKLOAD_GENERAL },
        { "small", PROFILE_TIER_SMALL, PROFILE_WORKLOAD_GENERAL },
        { "medium", PROFILE_TIER_MEDIUM, PROFILE_WORKLOAD_GENERAL },
        { "large", PROFILE_TIER_LARGE, PROFILE_WORKLOAD_GENERAL },
        { "postgresql", PROFILE_TIER_AUTO, PROFILE_WORKLOAD_DATABASE },
        { "bigdata", PROFILE_TIER_AUTO, PROFILE_WORKLOAD_BIGDATA },
    };

    for (size_t i = 0; i < ELEMENTSOF(examples); i++) {
        struct profile *p = parse_example(examples[i].name);

        cr_expect_eq(p->workload, examples[i].workload, "%s", examples[i].name);
        cr_expect_eq(p->ram_tier, examples[i].tier, "%s", examples[i].name);
        profile_free(p);
    }
}

Test(profile, persistent_keys_as_ipcs_and_proc_show_them)
{
    struct profile *p = parse_profile_or_die("version: 1\n"
                                             "segments:\n"
                                             "  persistent_keys:\n"
                                             "    - 0x0052e2c1\n"
                                             "    - 5432002\n"
                                             "    - -559038737\n"
                                             "    - 0xFFFFFFFF\n");

    cr_assert_eq(p->npersistent_keys, 4);
    cr_expect_eq(p->persistent_keys[0], 0x0052e2c1u);
    cr_expect_eq(p->persistent_keys[1], 5432002u);
    cr_expect_eq(p->persistent_keys[2], 0xdeadbeefu, "/proc/sysvipc/shm prints keys as signed int");
    cr_expect_eq(p->persistent_keys[3], 0xffffffffu);
    cr_expect(profile_key_is_persistent(p, 0xdeadbeefu));
    cr_expect_not(profile_key_is_persistent(p, 0));
    profile_free(p);

    p = parse_profile_or_die("version: 1\nsegments: {persistent_keys: [0x1]}\n");
    cr_expect_eq(p->npersistent_keys, 1);
    profile_free(p);
}

/* ---- labels ------------------------------------------------------------ */

Test(profile, labels_are_kept_as_written)
{
    struct profile *p = parse_profile_or_die("version: 1\n"
                                             "labels:\n"
                                             "  role: database\n"
                                             "  environment: \"prod\"\n"
                                             "  cluster: 'eu-west.pg-main'\n"
                                             "  rack: 12\n"
                                             "  pci: yes\n"
                                             "  schema_version: 1.10\n"
                                             "  mode: 010\n"
                                             "  since: 2024-01-01\n"
                                             "  city: Zürich\n"
                                             "  note: ''\n"
                                             "  owner.team_a-b: \"a \\\"quoted\\\" word\"\n");
    struct profile *other;
    static const char *const want[][2] = {
        { "role", "database" }, { "environment", "prod" }, { "cluster", "eu-west.pg-main" },
        { "rack", "12" },       { "pci", "yes" },          { "schema_version", "1.10" },
        { "mode", "010" },      { "since", "2024-01-01" }, { "city", "Zürich" },
        { "note", "" },         { "owner.team_a-b", "a \"quoted\" word" },
    };

    cr_assert_eq(p->nlabels, sizeof(want) / sizeof(want[0]));
    for (unsigned i = 0; i < p->nlabels; i++) {
        cr_expect_str_eq(p->labels[i].name, want[i][0]);
        cr_expect_str_eq(p->labels[i].value, want[i][1]);
    }
    profile_free(p);

    p = parse_profile_or_die("{version: 1, labels: {role: web, tier: 2}}");
    other = parse_profile_or_die("{version: 1, labels: {role: db, tier: 2}}");
    cr_assert_eq(p->nlabels, 2);
    cr_expect_str_eq(p->labels[1].value, "2");
    cr_expect_str_neq(p->sha256_hex, other->sha256_hex, "labels change the profile's sha256");
    profile_free(other);
    profile_free(p);
}

Test(profile, labels_at_their_limits)
{
    char yaml[1024], name[64], value[512] = "";
    size_t used;
    struct profile *p;

    /* 16 labels, a 63-character name, a 256-byte value of 2-byte characters. */
    memset(name, 'n', 63);
    name[0] = 'z';
    name[63] = '\0';
    for (int i = 0; i < 128; i++)
        strcat(value, "\xc3\xa9");
    used = (size_t)snprintf(yaml, sizeof(yaml), "version: 1\nlabels:\n  %s: %s\n", name, value);
    for (int i = 1; i < PROFILE_LABELS_MAX; i++)
        used += (size_t)snprintf(yaml + used, sizeof(yaml) - used, "  l%d: v\n", i);
    p = parse_profile_or_die(yaml);
    cr_expect_eq(p->nlabels, PROFILE_LABELS_MAX);
    cr_expect_str_eq(p->labels[0].name, name);
    cr_expect_eq(strlen(p->labels[0].value), 256);
    cr_expect_str_eq(p->labels[0].value, value);
    profile_free(p);
}

Test(profile, labels_long_names_and_values)
{
    char yaml[1024], name[80], value[300], want[512];

    memset(name, 'a', 64);
    name[64] = '\0';
    memset(value, 'v', 257);
    value[257] = '\0';
    snprintf(yaml, sizeof(yaml), "version: 1\nlabels:\n  %s: x\n  ok: %s\n", name, value);
    snprintf(want, sizeof(want),
             "3:3 label name '%.40s...' is not valid: it is longer than 63 characters " LABEL_RULE "\n"
             "4:7 'labels.ok' is 257 bytes long; a label value is at most 256 bytes\n",
             name);
    expect_errors(yaml, want);
}

/* ---- metrics.textfile -------------------------------------------------- */

Test(profile, metrics_textfile_lengths)
{
    char yaml[2048], name[202], want[512];

    /* 201 bytes of name: one too many for the temporary file beside it. */
    memset(name, 'a', 196);
    memcpy(name + 196, ".prom", 6);
    snprintf(want, sizeof(want), "2:21 'metrics.textfile' " PROM_RULE "'/%s'\n", name);
    snprintf(yaml, sizeof(yaml), "version: 1\nmetrics: {textfile: /%s}\n", name);
    expect_errors(yaml, want);
    name[195] = '\0';
    strcat(name, ".prom");
    snprintf(yaml, sizeof(yaml), "version: 1\nmetrics: {textfile: /%s}\n", name);
    profile_free(parse_profile_or_die(yaml));
    /* Whole path over 1024 bytes. */
    strcpy(yaml, "version: 1\nmetrics: {textfile: ");
    for (int i = 0; i < 120; i++)
        strcat(yaml, "/abcdefgh");
    strcat(yaml, "/s.prom}\n");
    expect_errors(yaml, "2:21 'metrics.textfile' must be at most 1024 bytes long, not 1087\n");
}

/* The parser on inline documents. Every bad-profile message an operator can
 * see is also pinned by tests/fixtures/bad via the real binary. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "fsutil.h"
#include "hash.h"
#include "helpers.h"

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
    "  spool_dir: /var/spool/shmprov\n";

Test(profile, every_key)
{
    struct profile *p = parse_profile_or_die(full_profile);

    cr_expect_eq(p->ram_tier, TIER_LARGE);
    cr_expect_eq(p->workload, WORKLOAD_BIGDATA);
    cr_expect_eq(p->policy, POLICY_RAISE_ONLY);
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
    profile_free(p);
}

Test(profile, defaults)
{
    struct profile *p = parse_profile_or_die("version: 1\n");

    cr_expect_eq(p->ram_tier, TIER_AUTO);
    cr_expect_eq(p->workload, WORKLOAD_GENERAL);
    cr_expect_eq(p->policy, POLICY_ENFORCE);
    cr_expect_not(p->shmmax.set);
    cr_expect_not(p->shmall.set);
    cr_expect_not(p->shmmni.set);
    cr_expect_str_eq(p->dropin, PROFILE_DEFAULT_DROPIN);
    cr_expect_null(p->report.url);
    cr_expect_eq(p->report.timeout_s, 20);
    cr_expect_str_eq(p->report.spool_dir, "/var/lib/shmprov/spool");
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

Test(profile, all_errors_of_a_file_at_once)
{
    static const char yaml[] = "version: 1\n"
                               "host:\n"
                               "  ram_tier: huge\n"
                               "  colour: blue\n"
                               "limits:\n"
                               "  shmmax: 16GB\n"
                               "policy: lax\n";
    struct profile_diags d;
    struct profile *p = NULL;

    profile_diags_init(&d, "x.yaml");
    cr_assert_eq(profile_parse(yaml, sizeof(yaml) - 1, "x.yaml", &d, &p), -EINVAL);
    cr_expect_null(p);
    cr_assert_eq(d.count, 4);
    cr_expect_eq(d.items[0].line, 3);
    cr_expect_eq(d.items[0].col, 13);
    cr_expect_str_eq(d.items[0].message, "'host.ram_tier' must be one of auto, small, medium, large, not 'huge'");
    cr_expect_eq(d.items[1].line, 4);
    cr_expect_eq(d.items[1].col, 3);
    cr_expect_str_eq(d.items[1].message, "unknown key 'colour' in 'host' (known: ram_tier, workload)");
    cr_expect_eq(d.items[2].line, 6);
    cr_expect_str_eq(d.items[2].message,
                     "'limits.shmmax': ambiguous unit: write KiB/MiB/GiB/TiB or K/M/G/T (shmprov units are powers of 1024): '16GB'");
    cr_expect_eq(d.items[3].line, 7);
    cr_expect_str_eq(d.items[3].message, "'policy' must be one of enforce, raise-only, not 'lax'");
    profile_diags_free(&d);
}

Test(profile, billion_laughs_is_refused_without_expanding)
{
    static const char yaml[] = "version: 1\n"
                               "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                               "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                               "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n";
    struct profile_diags d;
    struct profile *p = NULL;

    profile_diags_init(&d, "x.yaml");
    cr_assert_eq(profile_parse(yaml, sizeof(yaml) - 1, "x.yaml", &d, &p), -EINVAL);
    /* One message per kind, not one per alias: the parser never expands. */
    cr_assert_eq(d.count, 5);
    cr_expect_eq(d.items[0].line, 2);
    cr_expect_eq(d.items[0].col, 1);
    cr_expect_str_eq(d.items[0].message, "unknown key 'a' (known: version, host, policy, limits, dropin, conflicts, report, segments)");
    cr_expect_eq(d.items[1].line, 2);
    cr_expect_eq(d.items[1].col, 4);
    cr_expect_str_eq(d.items[1].message, "YAML anchors (&name) are not allowed in a profile");
    cr_expect_eq(d.items[3].line, 3);
    cr_expect_eq(d.items[3].col, 8);
    cr_expect_str_eq(d.items[3].message, "YAML aliases (*name) are not allowed in a profile");
    profile_diags_free(&d);
}

Test(profile, quoted_keys_and_json_style_are_yaml_too)
{
    struct profile *p = parse_profile_or_die("{\"version\": 1, \"policy\": \"raise-only\"}");

    cr_expect_eq(p->policy, POLICY_RAISE_ONLY);
    profile_free(p);
}

Test(profile, utf8_byte_order_mark_is_skipped)
{
    struct profile *p = parse_profile_or_die("\xef\xbb\xbfversion: 1\npolicy: raise-only\n");

    cr_expect_eq(p->policy, POLICY_RAISE_ONLY);
    profile_free(p);
}

Test(profile, url_user_info_is_refused)
{
    static const char *const urls[] = {
        "http://127.0.0.1:80@collector.example.net/v1/events",
        "https://user:secret@collector.example.net/",
        "http://127.0.0.1.example.net/",
        "http://localhost:8x/",
        "ftp://127.0.0.1/",
        "https://",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        char yaml[256];
        struct profile_diags d;
        struct profile *p = NULL;

        snprintf(yaml, sizeof(yaml), "version: 1\nreport: {url: \"%s\"}\n", urls[i]);
        profile_diags_init(&d, "x.yaml");
        cr_expect_eq(profile_parse(yaml, strlen(yaml), "x.yaml", &d, &p), -EINVAL, "%s accepted", urls[i]);
        profile_free(p);
        profile_diags_free(&d);
    }
    struct profile *ok = parse_profile_or_die("version: 1\nreport: {url: \"http://127.0.0.1:8080/e\"}\n");
    profile_free(ok);
    ok = parse_profile_or_die("version: 1\nreport: {url: \"http://[::1]\"}\n");
    profile_free(ok);
}

Test(profile, short_paths_are_read_safely)
{
    static const char *const paths[] = { "/", "/a", "/.." };
    for (size_t i = 0; i < 3; i++) {
        char yaml[128];
        struct profile_diags d;
        struct profile *p = NULL;
        int r;

        snprintf(yaml, sizeof(yaml), "version: 1\nreport: {token_file: \"%s\"}\n", paths[i]);
        profile_diags_init(&d, "x.yaml");
        r = profile_parse(yaml, strlen(yaml), "x.yaml", &d, &p);
        cr_expect_eq(r, i == 2 ? -EINVAL : 0, "%s", paths[i]);
        profile_free(p);
        profile_diags_free(&d);
    }
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

Test(profile, builtin_is_profiles_default_yaml)
{
    struct profile_diags d;
    struct profile *p = NULL;
    char *buf = NULL, hex[65];
    size_t len;

    profile_diags_init(&d, PROFILE_BUILTIN_NAME);
    cr_assert_eq(profile_load_builtin(&d, &p), 0);
    cr_assert_not_null(p);
    cr_assert_eq(fsutil_read_file(SHMPROV_SOURCE_DIR "/profiles/default.yaml", 1 << 20, true, &buf, &len, NULL), 0);
    hash_sha256_hex(buf, len, hex);
    cr_expect_str_eq(p->sha256_hex, hex, "the built-in default must be profiles/default.yaml byte for byte");
    cr_expect(p->builtin);
    cr_expect_eq(p->ram_tier, TIER_AUTO);
    cr_expect_eq(p->workload, WORKLOAD_GENERAL);
    cr_expect_eq(p->policy, POLICY_ENFORCE);
    free(buf);
    profile_free(p);
    profile_diags_free(&d);
}

Test(profile, example_profiles_parse)
{
    static const char *const names[] = { "default", "small", "medium", "large", "postgresql", "bigdata" };
    static const enum workload workloads[] = { WORKLOAD_GENERAL, WORKLOAD_GENERAL, WORKLOAD_GENERAL,
                                               WORKLOAD_GENERAL, WORKLOAD_DATABASE, WORKLOAD_BIGDATA };
    static const enum ram_tier tiers[] = { TIER_AUTO, TIER_SMALL, TIER_MEDIUM, TIER_LARGE, TIER_AUTO, TIER_AUTO };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[512], *buf = NULL;
        size_t len;
        struct profile_diags d;
        struct profile *p = NULL;

        snprintf(path, sizeof(path), "%s/profiles/%s.yaml", SHMPROV_SOURCE_DIR, names[i]);
        cr_assert_eq(fsutil_read_file(path, 1 << 20, true, &buf, &len, NULL), 0, "%s", path);
        profile_diags_init(&d, path);
        cr_expect_eq(profile_parse(buf, len, path, &d, &p), 0, "%s: %s", path,
                     d.count ? d.items[0].message : "");
        if (p) {
            cr_expect_eq(p->workload, workloads[i], "%s", names[i]);
            cr_expect_eq(p->ram_tier, tiers[i], "%s", names[i]);
        }
        profile_free(p);
        profile_diags_free(&d);
        free(buf);
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

Test(profile, persistent_keys_errors)
{
    static const char yaml[] = "version: 1\n"
                               "segments:\n"
                               "  persistent_keys: [0, 0x123456789, 4294967296, -2147483649, 0x12, 18, 0x1g, 012x, [1]]\n";
    static const char *const want[] = {
        "'segments.persistent_keys': key 0 is IPC_PRIVATE, shared by every private segment; it cannot mark one: '0'",
        "'segments.persistent_keys': not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1): '0x123456789'",
        "'segments.persistent_keys': out of range for a System V key (32 bits): '4294967296'",
        "'segments.persistent_keys': out of range for a System V key (32 bits): '-2147483649'",
        "'segments.persistent_keys': key 0x00000012 is listed twice",
        "'segments.persistent_keys': not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1): '0x1g'",
        "'segments.persistent_keys': not a System V key (write it as ipcs shows it, e.g. 0x0052e2c1): '012x'",
        "'segments.persistent_keys[]' must be a value, not a list",
    };
    struct profile_diags d;
    struct profile *p = NULL;

    profile_diags_init(&d, "x.yaml");
    cr_assert_eq(profile_parse(yaml, sizeof(yaml) - 1, "x.yaml", &d, &p), -EINVAL);
    cr_assert_eq(d.count, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < d.count; i++)
        cr_expect_str_eq(d.items[i].message, want[i]);
    profile_diags_free(&d);

    profile_diags_init(&d, "x.yaml");
    cr_assert_eq(profile_parse("version: 1\nsegments:\n  persistent_keys: 0x12\n", 43, "x.yaml", &d, &p), -EINVAL);
    cr_assert_eq(d.count, 1);
    cr_expect_str_eq(d.items[0].message,
                     "'segments.persistent_keys' must be a list of keys such as [0x0052e2c1], not a scalar");
    profile_diags_free(&d);
}

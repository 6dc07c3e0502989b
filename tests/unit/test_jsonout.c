/* The two promises of every JSON document: numbers a double holds
 * exactly, strings that are valid UTF-8 (escaped reversibly when not). */
#include "helpers.h"
#include "jsonout.h"

/* Each input and its escaped form; unescaping gives the input back. */
static const struct {
    const char *in, *out;
} escapes[] = {
    { "plain", "plain" },
    { "caf\xc3\xa9", "caf\xc3\xa9" },                 /* valid 2-byte sequence: kept */
    { "caf\xe9.conf", "caf\\xe9.conf" },              /* latin-1 byte */
    { "host\xff", "host\\xff" },
    { "a\\b", "a\\x5cb" },                            /* the escape character itself */
    { "\xc0\xaf", "\\xc0\\xaf" },                     /* overlong '/' */
    { "\xed\xa0\x80", "\\xed\\xa0\\x80" },            /* a surrogate */
    { "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80" },   /* above U+10FFFF */
    { "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },       /* U+1F600: kept */
    { "\xe2\x82", "\\xe2\\x82" },                     /* cut short */
};

/* Replacing every \xHH by its byte gives the original back. */
static size_t unescape(const char *s, char *out)
{
    size_t n = 0;

    while (*s) {
        if (s[0] == '\\' && s[1] == 'x') {
            char hex[3] = { s[2], s[3], 0 };
            out[n++] = (char)strtoul(hex, NULL, 16);
            s += 4;
        } else {
            out[n++] = *s++;
        }
    }
    return n;
}

Test(jsonout, escapes_only_what_is_not_utf8_and_reversibly)
{
    for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
        size_t len = strlen(escapes[i].in);
        char *got = jsonout_escape(escapes[i].in, len), back[64];
        size_t n = unescape(got, back);

        cr_assert_str_eq(got, escapes[i].out, "row %zu", i);
        cr_assert_eq(n, len, "row %zu", i);
        cr_assert(memcmp(back, escapes[i].in, n) == 0, "row %zu", i);
        free(got);
    }
}

Test(jsonout, string_of_invalid_utf8_serialises_as_valid_json_text)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "h", jsonout_string("h\xff"));
    json_object_object_add(o, "n", jsonout_string(NULL));
    cr_assert_str_eq(jsonout_text(o, false), "{\"h\":\"h\\\\xff\",\"n\":null}");
    json_object_put(o);
}

Test(jsonout, numbers_above_2_53_become_null_and_decimal)
{
    json_object *o = json_object_new_object();

    jsonout_add_u64(o, "max_safe", true, JSONOUT_MAX_SAFE_INTEGER);
    jsonout_add_u64(o, "above", true, JSONOUT_MAX_SAFE_INTEGER + 1);
    jsonout_add_u64(o, "unlimited", true, UINT64_C(18446744073692774399));
    jsonout_add_u64(o, "unknown", false, 42);
    cr_assert_str_eq(jsonout_text(o, false),
                     "{\"max_safe\":9007199254740991,\"above\":null,\"above_decimal\":\"9007199254740992\","
                     "\"unlimited\":null,\"unlimited_decimal\":\"18446744073692774399\",\"unknown\":null}");
    json_object_put(o);
}

#include "jsonout.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

size_t jsonout_utf8_length(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    else
        return 0;
    /* The second byte's range is what rules out overlongs, surrogates and
     * code points past U+10FFFF. */
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Escapes s[0..len) into out (room for 4 * len + 1 bytes); returns the
 * escaped length. */
static size_t escape_into(const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    char *o = out;

    for (size_t i = 0; i < len;) {
        size_t n = jsonout_utf8_length(p + i, len - i);

        if (n == 0 || p[i] == '\\') {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[p[i] >> 4];
            *o++ = hex[p[i] & 0xf];
            i++;
        } else {
            memcpy(o, p + i, n);
            o += n;
            i += n;
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

/* At worst every byte is \xHH. */
static char *escape_alloc(size_t len)
{
    return len > (SIZE_MAX - 1) / 4 ? NULL : malloc(len * 4 + 1);
}

char *jsonout_escape(const char *s, size_t len)
{
    char *out = escape_alloc(len);

    if (out)
        (void)escape_into(s, len, out);
    return out;
}

json_object *jsonout_string_len(const char *s, size_t len)
{
    char *escaped = s ? escape_alloc(len) : NULL;
    json_object *o = escaped ? json_object_new_string_len(escaped, (int)escape_into(s, len, escaped)) : NULL;

    free(escaped);
    return o;
}

json_object *jsonout_string(const char *s)
{
    return s ? jsonout_string_len(s, strlen(s)) : NULL;
}

void jsonout_add_u64(json_object *o, const char *name, bool known, uint64_t v)
{
    char decimal_name[128], decimal[24];

    if (known && v <= JSONOUT_MAX_SAFE_INTEGER) {
        json_object_object_add(o, name, json_object_new_uint64(v));
        return;
    }
    json_object_object_add(o, name, NULL);
    if (!known)
        return;
    (void)snprintf(decimal_name, sizeof(decimal_name), "%s_decimal", name);
    (void)snprintf(decimal, sizeof(decimal), "%llu", (unsigned long long)v);
    json_object_object_add(o, decimal_name, json_object_new_string(decimal));
}

const char *jsonout_text(json_object *doc, bool pretty)
{
    return json_object_to_json_string_ext(doc, (pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN) |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
}

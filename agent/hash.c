#include "hash.h"

#include <stdint.h>
#include <sys/types.h>
#include <sha2.h>

void hash_sha256_hex(const void *buf, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA2_CTX ctx;

    SHA256Init(&ctx);
    SHA256Update(&ctx, buf, len);
    SHA256Final(digest, &ctx);
    for (size_t i = 0; i < sizeof(digest); i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    out[64] = '\0';
}

#pragma once
#include <stddef.h>

/* Lower-case hex SHA-256 of buf into out (65 bytes with the NUL). */
void hash_sha256_hex(const void *buf, size_t len, char out[65]);

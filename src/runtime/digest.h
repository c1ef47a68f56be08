/* digest.h: a 64-bit FNV-1a digest, for comparing what ranks hold
 * (configuration, file lists) without sending it. Not cryptographic. */
#ifndef CAE_DIGEST_H
#define CAE_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CAE_DIGEST_INIT 0xcbf29ce484222325ULL

/* h extended by n bytes at p */
static inline uint64_t cae_digest(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* h extended by a string and its terminator (so "ab","c" and "a","bc"
 * differ); NULL counts as a string of its own */
static inline uint64_t cae_digest_str(uint64_t h, const char *s)
{
    return s ? cae_digest(h, s, strlen(s) + 1) : cae_digest(h, "\xff", 1);
}

#endif

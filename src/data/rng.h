/* rng.h: the data pipeline's private PRNG (xoshiro256** seeded through
 * splitmix64). Every random choice of augmentation and masking draws from
 * one of these, seeded with the sample's seed, so a sample's views and mask
 * are a pure function of that seed. The stream need not (and does not)
 * match Python's random module; the distributions do. */
#ifndef CAE_DATA_RNG_H
#define CAE_DATA_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} cae_rng;

static inline uint64_t cae_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* splitmix64 never yields four zero words, so the state is always valid. */
static inline void cae_rng_seed(cae_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = cae_splitmix64(&seed);
}

static inline uint64_t cae_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t cae_rng_next(cae_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = cae_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = cae_rng_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits, like Python's random.random(). */
static inline double cae_rng_uniform(cae_rng *r)
{
    return (double)(cae_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Python's random.uniform(a, b) = a + (b - a) * random(): also fine when
 * a > b (the result then lies in [b, a]). */
static inline double cae_rng_range(cae_rng *r, double a, double b)
{
    return a + (b - a) * cae_rng_uniform(r);
}

/* Uniform integer in [lo, hi] (both included, hi >= lo), without modulo
 * bias: rejection on the top of the 64-bit range. */
static inline int64_t cae_rng_int(cae_rng *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1u;
    uint64_t limit, x;
    if (span == 0) /* the whole 64-bit range */
        return (int64_t)cae_rng_next(r);
    limit = UINT64_MAX - UINT64_MAX % span;
    do
        x = cae_rng_next(r);
    while (x >= limit);
    return lo + (int64_t)(x % span);
}

/* Standard normal (Box-Muller on two uniforms; 1 - u keeps the log finite).
 * Python's random.gauss and torch's normal_ differ in stream, not law. */
static inline double cae_rng_normal(cae_rng *r)
{
    double u1 = 1.0 - cae_rng_uniform(r), u2 = cae_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif

/* rng.c — xoshiro256** (Blackman & Vigna) seeded by splitmix64; see rng.h. */
#include <math.h>
#include "peftlua/rng.h"

static uint64_t pl_splitmix64_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void pl_rng_seed(struct pl_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = pl_splitmix64_next(&seed);
}

static uint64_t pl_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pl_rng_next(struct pl_rng *r)
{
    uint64_t *s = r->s, out = pl_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = pl_rotl64(s[3], 45);
    return out;
}

double pl_rng_uniform(struct pl_rng *r) { return (double)(pl_rng_next(r) >> 11) * 0x1.0p-53; }

double pl_rng_normal(struct pl_rng *r)
{
    double u = pl_rng_uniform(r), v = pl_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

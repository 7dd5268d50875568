/* rng.h — the one random number generator: xoshiro256** seeded through splitmix64.
 *
 * Deterministic per seed on every platform (integer arithmetic only until the final
 * conversion), so a seed reproduces sampling, initialisation, dropout, shuffling and tuning.
 * The state is four words that checkpoints save and restore as they are.
 */
#ifndef PEFTLUA_RNG_H
#define PEFTLUA_RNG_H

#include <stdint.h>

struct pl_rng { uint64_t s[4]; };

void     pl_rng_seed(struct pl_rng *r, uint64_t seed);
uint64_t pl_rng_next(struct pl_rng *r);
double   pl_rng_uniform(struct pl_rng *r);   /* [0, 1) with 53 bits */
double   pl_rng_normal(struct pl_rng *r);    /* N(0, 1), Box–Muller (one variate per call) */

#endif

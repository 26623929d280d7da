/* rng.h - counter-based random numbers.
 *
 * Every random draw in presight is a pure function of (key, counter): no
 * hidden state to save, identical on any number of ranks, and a resumed run
 * draws exactly what an uninterrupted one would. Keys are derived from the
 * seed and a purpose (a tensor name, a dataset, ...) with rng_key(). */
#ifndef PRESIGHT_RNG_H
#define PRESIGHT_RNG_H

#include <stdint.h>

/* A strong 64-bit mix (splitmix64's finaliser). */
static inline uint64_t rng_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The counter-th 64-bit value of stream key. */
static inline uint64_t rng_u64(uint64_t key, uint64_t counter) {
    return rng_mix(rng_mix(key) ^ rng_mix(counter + 0x632be59bd9b4e019ULL));
}

/* Uniform in [0, 1), 53 bits. */
static inline double rng_uniform(uint64_t key, uint64_t counter) {
    return (double)(rng_u64(key, counter) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n) (n > 0), by 128-bit multiply (bias < 2^-64 n). */
static inline uint64_t rng_below(uint64_t key, uint64_t counter, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_u64(key, counter) * n) >> 64);
}

/* A key for one purpose under a seed: rng_key(seed, "layers.0.attention.wq.weight"). */
uint64_t rng_key(uint64_t seed, const char *purpose);

/* Standard normal number i of stream key (Box-Muller on draws 2i and 2i+1). */
double rng_normal(uint64_t key, uint64_t i);

#endif

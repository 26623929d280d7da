#include "rng.h"

#include <math.h>

uint64_t rng_key(uint64_t seed, const char *purpose) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the purpose, then mixed with the seed */
    for (const unsigned char *p = (const unsigned char *)purpose; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return rng_mix(h ^ rng_mix(seed));
}

double rng_normal(uint64_t key, uint64_t i) {
    double u1 = rng_uniform(key, 2 * i), u2 = rng_uniform(key, 2 * i + 1);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

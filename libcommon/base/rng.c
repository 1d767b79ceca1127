/* rng.c - Philox4x32-10 (Salmon et al., SC'11; the generator of numpy.random.Philox and curand),
 * and the distributions ddpipe draws from it. */
#include "libcommon/base/base.h"

#include <math.h>

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void dd_philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void dd_rng_init(DdRng *r, uint64_t seed, uint64_t stream, uint64_t index)
{
    r->key = splitmix64(seed) ^ splitmix64(stream * 0x632BE59BD9B4E019ull + 1);
    r->index = index;
    r->draw = 0;
    r->pos = 4;
}

uint32_t dd_rng_u32(DdRng *r)
{
    if (r->pos == 4) {
        dd_philox4x32(r->key, r->index, r->draw++, r->buf);
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

uint64_t dd_rng_u64(DdRng *r)
{
    uint64_t hi = dd_rng_u32(r);
    return (hi << 32) | dd_rng_u32(r);
}

double dd_rng_uniform(DdRng *r) { return (double)(dd_rng_u64(r) >> 11) * 0x1.0p-53; }

double dd_rng_uniform_range(DdRng *r, double lo, double hi) { return lo + (hi - lo) * dd_rng_uniform(r); }

int64_t dd_rng_int(DdRng *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1;
    if (span == 0) return (int64_t)dd_rng_u64(r); /* full 64-bit range */
    uint64_t lim = UINT64_MAX - UINT64_MAX % span, v;
    do v = dd_rng_u64(r);
    while (v >= lim);
    return lo + (int64_t)(v % span);
}

double dd_rng_normal(DdRng *r)
{
    double u1 = dd_rng_uniform(r), u2 = dd_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double dd_rng_beta11(DdRng *r) { return dd_rng_uniform(r); }

double dd_rng_gamma(DdRng *r, double shape)
{
    if (shape < 1.0) {
        double u = dd_rng_uniform(r);
        return dd_rng_gamma(r, shape + 1.0) * pow(u > 0 ? u : 1e-300, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = dd_rng_normal(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = dd_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

double dd_rng_beta(DdRng *r, double a, double b)
{
    double x = dd_rng_gamma(r, a), y = dd_rng_gamma(r, b);
    return x / (x + y);
}

void dd_rng_perm(DdRng *r, int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = dd_rng_int(r, 0, i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

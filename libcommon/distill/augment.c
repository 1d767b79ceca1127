/* augment.c - seeded augmentation draws (see augment.h). */
#include "libcommon/distill/augment.h"

#include <math.h>

AugBox aug_rrc(DdRng *r, int H, int W, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi)
{
    double area = (double)H * W, lr0 = log(ratio_lo), lr1 = log(ratio_hi);
    for (int t = 0; t < 10; t++) {
        double target = area * dd_rng_uniform_range(r, scale_lo, scale_hi);
        double ar = exp(dd_rng_uniform_range(r, lr0, lr1));
        int w = (int)lround(sqrt(target * ar)), h = (int)lround(sqrt(target / ar));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            AugBox b = {(int)dd_rng_int(r, 0, H - h), (int)dd_rng_int(r, 0, W - w), h, w};
            return b;
        }
    }
    double in_ratio = (double)W / H;
    int w, h;
    if (in_ratio < ratio_lo) {
        w = W;
        h = (int)lround(w / ratio_lo);
    } else if (in_ratio > ratio_hi) {
        h = H;
        w = (int)lround(h * ratio_hi);
    } else {
        w = W;
        h = H;
    }
    AugBox b = {(H - h) / 2, (W - w) / 2, h, w};
    return b;
}

AugRecover aug_recover_draw(uint64_t seed, int64_t step, int H, int W, int jitter)
{
    DdRng r;
    dd_rng_init(&r, seed, AUG_STREAM_RECOVER, (uint64_t)step);
    AugRecover a;
    a.box = aug_rrc(&r, H, W, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0);
    a.flip = dd_rng_uniform(&r) < 0.5;
    a.roll_h = (int)dd_rng_int(&r, 0, jitter);
    a.roll_w = (int)dd_rng_int(&r, 0, jitter);
    return a;
}

/* test_augment.c - augmentation draws: boxes inside the image, the area and ratio ranges of
 * RandomResizedCrop, the fallback, determinism per (seed, step) and independence across steps. */
#include "libcommon/distill/augment.h"
#include "tests/unit/check.h"

int main(void)
{
    DdRng r;
    dd_rng_init(&r, 3, AUG_STREAM_RECOVER, 0);
    double amin = 1, amax = 0;
    for (int i = 0; i < 20000; i++) {
        AugBox b = aug_rrc(&r, 28, 28, 0.08, 1.0, 0.75, 4.0 / 3.0);
        CHECK(b.h > 0 && b.w > 0 && b.top >= 0 && b.left >= 0 && b.top + b.h <= 28 && b.left + b.w <= 28);
        double a = (double)b.h * b.w / (28.0 * 28.0);
        amin = a < amin ? a : amin;
        amax = a > amax ? a : amax;
        /* rounding of w and h moves the ratio a little at small sizes: allow one pixel */
        CHECK((double)b.w / (b.h + 1) <= 4.0 / 3.0 && (double)(b.w + 1) / b.h >= 0.75);
    }
    CHECK(amin < 0.1 && amax > 0.95);
    /* Fallback: an impossible ratio range forces the centre crop with the ratio clamped. */
    AugBox f = aug_rrc(&r, 20, 40, 0.99, 1.0, 0.5, 1.0);
    CHECK(f.h == 20 && f.w == 20 && f.top == 0 && f.left == 10);
    /* Determinism and independence. */
    AugRecover a = aug_recover_draw(7, 123, 32, 32, 4), b = aug_recover_draw(7, 123, 32, 32, 4);
    CHECK(a.box.top == b.box.top && a.box.left == b.box.left && a.box.h == b.box.h && a.flip == b.flip &&
          a.roll_h == b.roll_h && a.roll_w == b.roll_w);
    int flips = 0, differ = 0;
    for (int s = 0; s < 1000; s++) {
        AugRecover c = aug_recover_draw(7, s, 32, 32, 4);
        flips += c.flip;
        CHECK(c.roll_h >= 0 && c.roll_h <= 4 && c.roll_w >= 0 && c.roll_w <= 4);
        differ += c.box.h != a.box.h || c.box.top != a.box.top;
    }
    CHECK(flips > 400 && flips < 600);
    CHECK(differ > 900);
    return check_done("test_augment");
}

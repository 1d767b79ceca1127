/* augment.h - the random draws of ddpipe's augmentations, keyed by the counter-based RNG so a
 * draw depends only on (seed, purpose, index), never on batch size, threads or process split.
 *
 * The geometry follows torchvision: RandomResizedCrop.get_params (10 tries, then the centre-crop
 * fallback with the ratio clamped), RandomHorizontalFlip (p), and the circular roll jitter of the
 * SRe2L/FADRM recover loop (ddpipe-method(7) section 2). Applying the draws is the engine's business
 * (nn_crop_resize, nn_flip_w, nn_roll); these functions only decide.
 */
#ifndef DD_AUGMENT_H
#define DD_AUGMENT_H

#include <stdint.h>

#include "libcommon/base/base.h"

/* Stream ids: one per purpose, so two purposes with the same seed and index never share draws. */
enum {
    AUG_STREAM_RECOVER = 1,   /* recover: index = global step (batch-shared draw) */
    AUG_STREAM_PATCHSEL = 2,  /* patchsel: index = source record */
    AUG_STREAM_RELABEL = 3,   /* relabel: index = epoch * 2^32 + image */
    AUG_STREAM_TRAIN = 4,     /* evaltrain: index = epoch * 2^32 + image */
    AUG_STREAM_SUBSET = 5,    /* candidate subsets, permutations */
    AUG_STREAM_INIT = 6,      /* noise initialisation, weight initialisation */
};

typedef struct {
    int top, left, h, w;      /* crop box in the source image */
} AugBox;

/* torchvision RandomResizedCrop.get_params on an H x W image: area fraction U(scale_lo, scale_hi),
 * log-uniform aspect ratio in [ratio_lo, ratio_hi], w = round(sqrt(area*ratio)),
 * h = round(sqrt(area/ratio)), accepted when 0 < w <= W and 0 < h <= H, position uniform;
 * after 10 failures, the centre crop with the aspect ratio clamped to the range. */
AugBox aug_rrc(DdRng *r, int H, int W, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi);

/* Draw of one recover step (batch-shared): crop box, flip, roll shifts in [0, jitter]. */
typedef struct {
    AugBox box;
    int flip;
    int roll_h, roll_w;
} AugRecover;

AugRecover aug_recover_draw(uint64_t seed, int64_t step, int H, int W, int jitter);

#endif

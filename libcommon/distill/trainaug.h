/* trainaug.h - evaltrain's augmentations applied on host memory: data preparation before a batch
 * is uploaded, so no gradient is involved. Per image: RDED's ShufflePatches, RandomResizedCrop
 * (the box from augment.h's aug_rrc, applied with img_crop_resize), RandomCrop with zero padding,
 * horizontal flip. Per batch: CutMix and MixUp, on the images and on [n,K] targets.
 *
 * Images are float [C,H,W] planes, batches [n,C,H,W], contiguous. Ownership: every buffer is the
 * caller's; functions write their outputs (=) and allocate only short-lived scratch. No errors:
 * sizes are the caller's contract.
 */
#ifndef DD_TRAINAUG_H
#define DD_TRAINAUG_H

#include <stdint.h>

#include "libcommon/base/base.h"
#include "libcommon/distill/augment.h"

/* RDED's ShufflePatches(f): the image is cut into f vertical strips (width W/f, the last one takes
 * the remainder) put back in a random order, then the same along the height. f <= 1: unchanged. */
void trainaug_shuffle_patches(DdRng *r, float *img, int C, int H, int W, int f);

/* torchvision RandomCrop(size=(H,W), padding=pad) on a zero-padded image: dst = rows [dy, dy+H),
 * cols [dx, dx+W) of the (H+2pad) x (W+2pad) padded src; dy, dx in [0, 2*pad]. */
void trainaug_pad_crop(const float *src, int C, int H, int W, int pad, int dy, int dx, float *dst);

/* Mirrors the image left-right in place. */
void trainaug_flip(float *img, int C, int H, int W);

/* The CutMix box of the reference rand_bbox for lambda lam: side ratio sqrt(1-lam), cut_h =
 * (int)(H*ratio), cut_w = (int)(W*ratio), centre (cy, cx) uniform over the pixels, each side
 * clipped to the image. box = {y0, x0, y1, x1}, half-open; may be empty. */
void trainaug_cutmix_box(DdRng *r, int H, int W, double lam, int box[4]);

/* CutMix on a batch x [n,C,H,W]: the box region of image i is replaced by that of the ORIGINAL
 * image perm[i] (as torch's x[:, :, box] = x[perm][:, :, box]). */
void trainaug_cutmix(float *x, int n, int C, int H, int W, const int64_t *perm, const int box[4]);

/* MixUp on rows: x[i] = lam * x[i] + (1 - lam) * x_orig[perm[i]] for n rows of `row` floats
 * (images or [n,K] targets). Also the linear target mixing of CutMix (lam = 1 - box area). */
void trainaug_mix_rows(float *x, int n, int64_t row, const int64_t *perm, float lam);

#endif

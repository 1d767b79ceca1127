/* merge.h - FADRM's data residual (ARC, ddpipe-method(7) section 2) on one image: resample the initial
 * patch P to x's size (bilinear, align_corners=False, no antialias) and set
 * x = alpha * x + (1 - alpha) * P in float32. The one implementation of the merge: recover's fused
 * schedule and the arcmerge filter must give the same bits, so both call this.
 *
 * Ownership: x is caller-owned and updated in place (=); P is borrowed. No allocation failure
 * (dd_malloc exits); sizes are the caller's contract (>= 1).
 */
#ifndef DD_DISTILL_MERGE_H
#define DD_DISTILL_MERGE_H

/* x [C,H,W] (=) a * x + b * resample(P [C,PH,PW] -> [C,H,W]) with a = (float)alpha and
 * b = (float)(1 - alpha) (both scalars rounded to float32 as the PyTorch reference does), evaluated
 * per element as a*x + b*p in float (no fused multiply-add: C11 mode contracts nothing). */
void arc_merge(float *x, int C, int H, int W, const float *P, int PH, int PW, double alpha);

#endif

/* merge.c - the ARC merge x = alpha*x + (1-alpha)*resample(P) (see merge.h). */
#include "libcommon/distill/merge.h"

#include <stdlib.h>

#include "libcommon/base/base.h"
#include "libcommon/image/resize.h"

void arc_merge(float *x, int C, int H, int W, const float *P, int PH, int PW, double alpha)
{
    const float a = (float)alpha, b = (float)(1.0 - alpha);
    const size_t n = (size_t)C * (size_t)H * (size_t)W;
    float *rs = NULL;
    if (PH != H || PW != W) {
        rs = dd_malloc(n * sizeof *rs);
        img_resize_bilinear(P, C, PH, PW, rs, H, W);
        P = rs;
    }
    for (size_t i = 0; i < n; i++) x[i] = a * x[i] + b * P[i];
    free(rs);
}

/* trainaug.c - evaltrain's host-side augmentations (see trainaug.h). */
#include "libcommon/distill/trainaug.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Strip s of f along a side of length L: [s*(L/f), s+1 == f ? L : (s+1)*(L/f)). */
static void strip(int L, int f, int s, int *b, int *e)
{
    *b = s * (L / f);
    *e = s + 1 == f ? L : (s + 1) * (L / f);
}

void trainaug_shuffle_patches(DdRng *r, float *img, int C, int H, int W, int f)
{
    if (f <= 1) return;
    int64_t plane = (int64_t)H * W;
    float *tmp = dd_malloc((size_t)(plane * C) * sizeof(float));
    int64_t *perm = dd_malloc((size_t)f * sizeof *perm);
    /* Columns first (the reference shuffles the last dim, transposes, shuffles again). */
    dd_rng_perm(r, perm, f);
    memcpy(tmp, img, (size_t)(plane * C) * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            const float *src = tmp + c * plane + (int64_t)y * W;
            float *dst = img + c * plane + (int64_t)y * W;
            for (int s = 0, x = 0; s < f; s++) {
                int b, e;
                strip(W, f, (int)perm[s], &b, &e);
                memcpy(dst + x, src + b, (size_t)(e - b) * sizeof(float));
                x += e - b;
            }
        }
    dd_rng_perm(r, perm, f);
    memcpy(tmp, img, (size_t)(plane * C) * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int s = 0, y = 0; s < f; s++) {
            int b, e;
            strip(H, f, (int)perm[s], &b, &e);
            memcpy(img + c * plane + (int64_t)y * W, tmp + c * plane + (int64_t)b * W,
                   (size_t)(e - b) * W * sizeof(float));
            y += e - b;
        }
    free(perm);
    free(tmp);
}

void trainaug_pad_crop(const float *src, int C, int H, int W, int pad, int dy, int dx, float *dst)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            int sy = y + dy - pad;
            float *d = dst + ((int64_t)c * H + y) * W;
            if (sy < 0 || sy >= H) {
                memset(d, 0, (size_t)W * sizeof(float));
                continue;
            }
            const float *s = src + ((int64_t)c * H + sy) * W;
            for (int x = 0; x < W; x++) {
                int sx = x + dx - pad;
                d[x] = sx < 0 || sx >= W ? 0.0f : s[sx];
            }
        }
}

void trainaug_flip(float *img, int C, int H, int W)
{
    for (int64_t row = 0; row < (int64_t)C * H; row++) {
        float *p = img + row * W;
        for (int a = 0, b = W - 1; a < b; a++, b--) {
            float t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

static int clip(int v, int hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

void trainaug_cutmix_box(DdRng *r, int H, int W, double lam, int box[4])
{
    double rat = sqrt(1.0 - lam);
    int cut_h = (int)(H * rat), cut_w = (int)(W * rat);
    int cy = (int)dd_rng_int(r, 0, H - 1), cx = (int)dd_rng_int(r, 0, W - 1);
    box[0] = clip(cy - cut_h / 2, H);
    box[1] = clip(cx - cut_w / 2, W);
    box[2] = clip(cy + cut_h / 2, H);
    box[3] = clip(cx + cut_w / 2, W);
}

void trainaug_cutmix(float *x, int n, int C, int H, int W, const int64_t *perm, const int box[4])
{
    if (box[2] <= box[0] || box[3] <= box[1]) return;
    int64_t img = (int64_t)C * H * W;
    float *orig = dd_malloc((size_t)(img * n) * sizeof(float));
    memcpy(orig, x, (size_t)(img * n) * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            for (int y = box[0]; y < box[2]; y++) {
                int64_t off = ((int64_t)c * H + y) * W + box[1];
                memcpy(x + i * img + off, orig + perm[i] * img + off, (size_t)(box[3] - box[1]) * sizeof(float));
            }
    free(orig);
}

void trainaug_mix_rows(float *x, int n, int64_t row, const int64_t *perm, float lam)
{
    float *orig = dd_malloc((size_t)(row * n) * sizeof(float));
    memcpy(orig, x, (size_t)(row * n) * sizeof(float));
    const float oml = 1.0f - lam;
    for (int i = 0; i < n; i++) {
        float *d = x + i * row;
        const float *a = orig + i * row, *b = orig + perm[i] * row;
        for (int64_t k = 0; k < row; k++) d[k] = lam * a[k] + oml * b[k];
    }
    free(orig);
}

/* conv_flat.c - stride-1 'same' convolutions without im2col: shifted GEMMs over padded flat planes.
 *
 * A chunk of images is laid out per channel as one flat row: each image row is followed by `pad`
 * zero columns (pitch wp = w + pad, so the zeros right of one row are also the zeros left of the
 * next), each image by `pad` zero rows (the bottom padding of one image is the top padding of the
 * next), and a guard of g = pad*wp + pad zeros sits at both ends. In that layout tap (ki, kj) of
 * every output pixel reads the input at one fixed offset, (ki dil - pad) wp + (kj dil - pad), so the
 * convolution is kh*kw GEMMs W_tap [cout, cin] x X[:, off_tap ...], accumulated into an output in
 * the same layout. The output's pad positions are computed and dropped: 1 - hw / ((h+pad)(w+pad))
 * of the work, which is why cpu_flat_ok takes only planes where that is small. Against im2col this
 * saves writing and reading a col matrix kh*kw times the input, and in the backward pass the
 * col2im scatter and the zeroing of that matrix.
 *
 * Backward data is the same GEMMs with the transposed taps at negated offsets, over dy laid out
 * the same way (zeros at its pad positions, so dropped outputs feed nothing back). The weight
 * gradient is dW_tap += dY X_shift^T over the chunk's columns (on conv.c's AVX-512 kernel GEMM
 * where it pays, else OpenBLAS), in CONV_PARTS fixed image groups summed in order: like the
 * im2col path, results do not depend on the thread count.
 */
#include "libcommon/nn/cpu/cpu.h"

#include <cblas.h>
#include <string.h>

/* Least fraction of computed outputs that are real pixels for the flat path to be taken. */
#define FLAT_MIN_USEFUL 0.85
/* Columns a chunk aims for. */
#define FLAT_COLS 1024

typedef struct {
    int wp, chunk;  /* row pitch; images per chunk */
    size_t pi;      /* floats per image in a flat row: (h + pad) * wp */
    size_t g;       /* guard floats at each end */
    int ntap;
} Flat;

int cpu_flat_ok(const NnConvShape *s)
{
    if (s->stride != 1 || s->pad <= 0 || s->dil < 1) return 0;
    if ((s->kh - 1) * s->dil != 2 * s->pad || (s->kw - 1) * s->dil != 2 * s->pad) return 0;
    if (s->oh != s->h || s->ow != s->w) return 0;
    double useful = (double)s->h * s->w / ((double)(s->h + s->pad) * (s->w + s->pad));
    return useful >= FLAT_MIN_USEFUL;
}

/* Images per chunk: about FLAT_COLS columns (balanced: cpu_balanced_chunk). */
static Flat flat_geom(const NnConvShape *s)
{
    Flat f;
    f.wp = s->w + s->pad;
    f.pi = (size_t)(s->h + s->pad) * f.wp;
    f.g = (size_t)s->pad * f.wp + s->pad;
    f.ntap = s->kh * s->kw;
    int want = (int)(FLAT_COLS / f.pi);
    if (want < 1) want = 1;
    f.chunk = cpu_balanced_chunk(s->n, want);
    return f;
}

static int64_t flat_nchunks(const NnConvShape *s, const Flat *f)
{
    return (s->n + f->chunk - 1) / f->chunk;
}

/* Floats of one channel's flat row for nb images, guards included. */
static size_t flat_len(const Flat *f, int nb) { return (size_t)nb * f->pi + 2 * f->g; }

static ptrdiff_t flat_off(const NnConvShape *s, const Flat *f, int t)
{
    int ki = t / s->kw, kj = t % s->kw;
    return (ptrdiff_t)(ki * s->dil - s->pad) * f->wp + (kj * s->dil - s->pad);
}

/* buf [c][len] <- nb images src [nb][c][h][w] in the flat layout, zeros everywhere else. */
static void flat_pack(const NnConvShape *s, const Flat *f, int c, int nb, const float *src,
                      float *buf, size_t len)
{
    size_t plane = (size_t)s->h * s->w, rowpad = (size_t)s->pad * sizeof(float);
    for (int ch = 0; ch < c; ch++) {
        float *row = buf + (size_t)ch * len;
        memset(row, 0, f->g * sizeof(float));
        float *p = row + f->g;
        for (int i = 0; i < nb; i++) {
            const float *x = src + ((size_t)i * c + ch) * plane;
            for (int r = 0; r < s->h; r++, p += f->wp) {
                memcpy(p, x + (size_t)r * s->w, (size_t)s->w * sizeof(float));
                memset(p + s->w, 0, rowpad);
            }
            memset(p, 0, (size_t)s->pad * f->wp * sizeof(float));
            p += (size_t)s->pad * f->wp;
        }
        memset(p, 0, f->g * sizeof(float));
    }
}

/* dst [nb][c][h][w] (= or +=) the real pixels of out [c][ld] (flat layout without guards). */
static void flat_unpack(const NnConvShape *s, const Flat *f, int c, int nb, const float *out,
                        size_t ld, float *dst, int accumulate)
{
    size_t plane = (size_t)s->h * s->w;
    for (int i = 0; i < nb; i++)
        for (int ch = 0; ch < c; ch++) {
            const float *o = out + (size_t)ch * ld + (size_t)i * f->pi;
            float *d = dst + ((size_t)i * c + ch) * plane;
            for (int r = 0; r < s->h; r++, o += f->wp, d += s->w) {
                if (accumulate)
                    for (int j = 0; j < s->w; j++) d[j] += o[j];
                else
                    memcpy(d, o, (size_t)s->w * sizeof(float));
            }
        }
}

typedef struct {
    const NnConvShape *s;
    Flat f;
    NnBackend *be;
    const float *x, *wt, *b, *dy; /* wt: the weights as taps [ntap][cout][cin/groups] */
    float *y, *dx, *dw, *parts;
    size_t wsize;
} FlatJob;

/* wt [t][o][c] <- w [o][c][t]. */
static void taps_from_weights(const NnConvShape *s, const float *w, float *wt)
{
    int kc = s->cin / s->groups, nt = s->kh * s->kw;
    for (int o = 0; o < s->cout; o++)
        for (int c = 0; c < kc; c++)
            for (int t = 0; t < nt; t++)
                wt[((size_t)t * s->cout + o) * kc + c] = w[((size_t)o * kc + c) * nt + t];
}

static void flat_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    const FlatJob *j = arg;
    const NnConvShape *s = j->s;
    const Flat *f = &j->f;
    int g = s->groups, m = s->cout / g, kc = s->cin / g;
    size_t len = flat_len(f, f->chunk), ld = (size_t)f->chunk * f->pi;
    float *xb = cpu_scratch(j->be, tid, len * s->cin + ld * s->cout), *out = xb + len * s->cin;
    for (int64_t ch = b; ch < e; ch++) {
        int n0 = (int)ch * f->chunk, nb = s->n - n0 < f->chunk ? s->n - n0 : f->chunk;
        int cols = (int)((size_t)nb * f->pi);
        flat_pack(s, f, s->cin, nb, j->x + (size_t)n0 * s->cin * s->h * s->w, xb, len);
        for (int gi = 0; gi < g; gi++)
            for (int t = 0; t < f->ntap; t++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, cols, kc, 1.0f,
                            j->wt + ((size_t)t * s->cout + (size_t)gi * m) * kc, kc,
                            xb + (size_t)gi * kc * len + f->g + flat_off(s, f, t), (int)len,
                            t ? 1.0f : 0.0f, out + (size_t)gi * m * ld, (int)ld);
        float *y = j->y + (size_t)n0 * s->cout * s->h * s->w;
        flat_unpack(s, f, s->cout, nb, out, ld, y, 0);
        if (j->b) cpu_add_bias(y, j->b, nb, s->cout, (int64_t)s->h * s->w);
    }
}

static void flat_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    const FlatJob *j = arg;
    const NnConvShape *s = j->s;
    const Flat *f = &j->f;
    int g = s->groups, m = s->cout / g, kc = s->cin / g;
    size_t len = flat_len(f, f->chunk), ld = (size_t)f->chunk * f->pi;
    float *dyb = cpu_scratch(j->be, tid, len * s->cout + ld * s->cin), *out = dyb + len * s->cout;
    for (int64_t ch = b; ch < e; ch++) {
        int n0 = (int)ch * f->chunk, nb = s->n - n0 < f->chunk ? s->n - n0 : f->chunk;
        int cols = (int)((size_t)nb * f->pi);
        flat_pack(s, f, s->cout, nb, j->dy + (size_t)n0 * s->cout * s->h * s->w, dyb, len);
        for (int gi = 0; gi < g; gi++)
            for (int t = 0; t < f->ntap; t++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kc, cols, m, 1.0f,
                            j->wt + ((size_t)t * s->cout + (size_t)gi * m) * kc, kc,
                            dyb + (size_t)gi * m * len + f->g - flat_off(s, f, t), (int)len,
                            t ? 1.0f : 0.0f, out + (size_t)gi * kc * ld, (int)ld);
        flat_unpack(s, f, s->cin, nb, out, ld, j->dx + (size_t)n0 * s->cin * s->h * s->w, 1);
    }
}

/* Item = one fixed group of images; its weight gradient, as taps, goes to parts[item]. One
 * group of at least KG_NR / 2 input channels with AVX-512: per chunk, dY's panels packed once
 * serve the taps' kernel GEMMs (Debian's OpenBLAS runs its AVX2 kernel on AVX-512 CPUs: half
 * the width; fewer input channels would leave most of a kernel tile's 32 columns empty). */
static void flat_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const FlatJob *j = arg;
    const NnConvShape *s = j->s;
    const Flat *f = &j->f;
    int g = s->groups, m = s->cout / g, kc = s->cin / g, kg = g == 1 && kc >= KG_NR / 2 && cpu_avx512();
    int nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS, npanel = (m + 5) / 6;
    size_t len = flat_len(f, f->chunk), ncols = (size_t)f->chunk * f->pi;
    size_t kgs = kg ? KG_SCRATCH + (size_t)npanel * 6 * ncols : 0;
    float *xb = cpu_scratch(j->be, tid, len * (s->cin + s->cout) + kgs), *dyb = xb + len * s->cin;
    float *kbuf = dyb + len * s->cout, *kpan = kbuf + KG_SCRATCH;
    for (int64_t p = b; p < e; p++) {
        float *dwt = j->parts + (size_t)p * j->wsize;
        int first = (int)(s->n * p / nparts), end = (int)(s->n * (p + 1) / nparts);
        if (!kg) memset(dwt, 0, j->wsize * sizeof(float)); /* the kernel GEMM's first chunk writes */
        for (int n0 = first; n0 < end; n0 += f->chunk) {
            int nb = end - n0 < f->chunk ? end - n0 : f->chunk;
            int cols = (int)((size_t)nb * f->pi);
            size_t plen = flat_len(f, nb);
            flat_pack(s, f, s->cin, nb, j->x + (size_t)n0 * s->cin * s->h * s->w, xb, plen);
            flat_pack(s, f, s->cout, nb, j->dy + (size_t)n0 * s->cout * s->h * s->w, dyb, plen);
            if (kg) { /* dW_tap += dY X_shift^T: A dY, B X shifted, transposed */
                cpu_kg_pack_a(dyb + f->g, plen, 0, m, cols, 0, npanel, kpan);
                for (int t = 0; t < f->ntap; t++) {
                    KGemm k = {.m = m, .k = cols, .cols = kc, .a = kpan, .b = xb + f->g + flat_off(s, f, t),
                               .ldb = plen, .trans = 1, .c = dwt + (size_t)t * s->cout * kc,
                               .ldc = (size_t)kc, .load = n0 > first};
                    cpu_kg_cols(&k, 0, kc, kbuf);
                }
                continue;
            }
            for (int gi = 0; gi < g; gi++)
                for (int t = 0; t < f->ntap; t++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, kc, cols, 1.0f,
                                dyb + (size_t)gi * m * plen + f->g, (int)plen,
                                xb + (size_t)gi * kc * plen + f->g + flat_off(s, f, t), (int)plen,
                                1.0f, dwt + ((size_t)t * s->cout + (size_t)gi * m) * kc, kc);
        }
    }
}

/* dw [o][c][t] += sum over parts, in order, of parts [p][t][o][c]; one output channel per item. */
static void flat_reduce_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const FlatJob *j = arg;
    const NnConvShape *s = j->s;
    int kc = s->cin / s->groups, nt = j->f.ntap, nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS;
    for (int64_t o = b; o < e; o++)
        for (int c = 0; c < kc; c++)
            for (int t = 0; t < nt; t++) {
                size_t i = ((size_t)t * s->cout + (size_t)o) * kc + (size_t)c;
                float acc = 0;
                for (int p = 0; p < nparts; p++) acc += j->parts[(size_t)p * j->wsize + i];
                j->dw[((size_t)o * kc + c) * nt + t] += acc;
            }
}

void cpu_flat_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                  const float *b, float *y)
{
    FlatJob j = {.s = s, .f = flat_geom(s), .be = be, .x = x, .b = b, .y = y};
    float *wt = cpu_shared(be, (size_t)s->cout * (s->cin / s->groups) * s->kh * s->kw);
    taps_from_weights(s, w, wt);
    j.wt = wt;
    cpu_for(be, flat_nchunks(s, &j.f), 2, flat_fwd_task, &j);
}

void cpu_flat_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                       float *dx)
{
    FlatJob j = {.s = s, .f = flat_geom(s), .be = be, .dy = dy, .dx = dx};
    float *wt = cpu_shared(be, (size_t)s->cout * (s->cin / s->groups) * s->kh * s->kw);
    taps_from_weights(s, w, wt);
    j.wt = wt;
    cpu_for(be, flat_nchunks(s, &j.f), 2, flat_bwd_data_task, &j);
}

void cpu_flat_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                         float *dw)
{
    FlatJob j = {.s = s, .f = flat_geom(s), .be = be, .x = x, .dy = dy, .dw = dw};
    int nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS;
    j.wsize = (size_t)s->cout * (s->cin / s->groups) * s->kh * s->kw;
    j.parts = cpu_shared(be, (size_t)nparts * j.wsize);
    cpu_for(be, nparts, 2, flat_bwd_filter_task, &j);
    cpu_for(be, s->cout, 8, flat_reduce_task, &j);
}

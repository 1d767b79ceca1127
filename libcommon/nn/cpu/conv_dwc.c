/* conv_dwc.c - depthwise convolution of small planes with AVX-512F, 16 channels to a vector:
 * forward and backward data (dx +=) where the output plane has 5 to 16 pixels (MobileNetV2's and
 * EfficientNet's small-image stages run 384-576 channels at 4x4).
 *
 * conv_dw.c vectorises along a plane; a 4x4 output is 20 lanes of two vectors (rows qw wide),
 * and its split and copies cost more than its 18 FMAs. Here a task item is one image and 16
 * channels: their input planes are gathered into a zero-padded [hp][wp][16] block (lane l =
 * channel c0 + l), each output pixel is one vector, the sum over taps of w[t] (16 channels' tap t)
 * times the block's vector under the tap, and the outputs are scattered back to their planes.
 * Backward data is the same block run the other way: each dy vector adds w[t] dy to the padded
 * block under every tap (taps ascending, outputs in row order), whose interior is then added to dx.
 *
 * Each output (and each dx pixel) is summed in one fixed order inside one item: results do not
 * depend on the thread count. The weight gradient stays with conv_dw.c. */
#include "libcommon/nn/cpu/cpu.h"

#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DWC_X86 1
#include <immintrin.h>
#define DWC_AVX512 __attribute__((target("avx512f")))
#endif

#define DWC_V 16         /* channels to a vector */
#define DWC_MIN_OUT 5    /* output pixels of a plane: from 3x2 (2x2 ran 1.35x slower than conv_dw.c) */
#define DWC_MAX_OUT 16   /* ... to 4x4 (8x8 ran 3.7x slower: conv_dw.c's runs fill their vectors) */
#define DWC_MAX_IN 196   /* padded input pixels of a plane: 14 x 14 */
#define DWC_MAX_TAPS 25

int cpu_dwc_ok(const NnConvShape *s)
{
#ifdef DWC_X86
    const char *env = getenv("DD_CPU_CONV"); /* read per call: tests run the other paths too */
    if (!cpu_avx512() || (env && (!strcmp(env, "gemm") || !strcmp(env, "direct")))) return 0;
    const int64_t hp = (int64_t)s->h + 2 * s->pad, wp = (int64_t)s->w + 2 * s->pad;
    return s->groups > 1 && s->groups == s->cin && s->groups == s->cout && s->dil == 1 && s->stride >= 1 &&
           s->stride <= 2 && s->pad >= 0 && s->kh * s->kw <= DWC_MAX_TAPS &&
           (int64_t)s->oh * s->ow >= DWC_MIN_OUT && (int64_t)s->oh * s->ow <= DWC_MAX_OUT &&
           hp * wp <= DWC_MAX_IN;
#else
    (void)s;
    return 0;
#endif
}

#ifdef DWC_X86

typedef struct {
    const NnConvShape *s;
    const float *x, *b, *dy;
    float *y, *dx;
    const float *wt; /* [blocks][taps][16]: channel c0 + l's tap t at lane l, zero past c */
    int nblk;
    int wp, nt;      /* padded row, taps */
    size_t hw, ohw;  /* input and output plane */
    size_t block;    /* floats of the padded [hp][wp][16] block */
} DwcJob;

/* The weights by channel block and tap, 16 lanes each. */
static float *dwc_weights(const NnConvShape *s, const float *w, int nblk)
{
    const int nt = s->kh * s->kw;
    float *wt = dd_calloc((size_t)nblk * nt * DWC_V, sizeof *wt);
    for (int c = 0; c < s->cin; c++)
        for (int t = 0; t < nt; t++)
            wt[((size_t)(c / DWC_V) * nt + t) * DWC_V + c % DWC_V] = w[(size_t)c * nt + t];
    return wt;
}

/* The channels of item it: image *n, first channel *c0, *cb of them (16 but in the last block). */
static void dwc_item(const DwcJob *j, int64_t it, int64_t *n, int *c0, int *cb)
{
    *n = it / j->nblk;
    *c0 = (int)(it % j->nblk) * DWC_V;
    *cb = j->s->cin - *c0 < DWC_V ? j->s->cin - *c0 : DWC_V;
}

DWC_AVX512 static void dwc_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwcJob *j = arg;
    const NnConvShape *s = j->s;
    const int wp = j->wp, nt = j->nt;
    const size_t hw = j->hw, ohw = j->ohw;
    float in[DWC_MAX_IN * DWC_V] __attribute__((aligned(64)));
    float out[DWC_MAX_OUT * DWC_V] __attribute__((aligned(64)));
    /* the padding stays zero: items write the interior only */
    memset(in, 0, j->block * sizeof *in);
    int last_cb = DWC_V;
    for (int64_t it = b; it < e; it++) {
        int64_t n;
        int c0, cb;
        dwc_item(j, it, &n, &c0, &cb);
        if (cb < last_cb) memset(in, 0, j->block * sizeof *in); /* lanes past cb: zero */
        last_cb = cb;
        for (int l = 0; l < cb; l++) {
            const float *p = j->x + ((size_t)n * s->cin + (size_t)(c0 + l)) * hw;
            for (int i = 0; i < s->h; i++)
                for (int k = 0; k < s->w; k++)
                    in[((size_t)(i + s->pad) * wp + k + s->pad) * DWC_V + l] = p[i * s->w + k];
        }
        const float *wt = j->wt + (size_t)(c0 / DWC_V) * nt * DWC_V;
        for (int oi = 0; oi < s->oh; oi++)
            for (int oj = 0; oj < s->ow; oj++) {
                const float *base = in + ((size_t)oi * s->stride * wp + (size_t)oj * s->stride) * DWC_V;
                __m512 acc = _mm512_setzero_ps();
                for (int ki = 0; ki < s->kh; ki++)
                    for (int kj = 0; kj < s->kw; kj++)
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + (ki * s->kw + kj) * DWC_V),
                                              _mm512_load_ps(base + ((size_t)ki * wp + kj) * DWC_V), acc);
                _mm512_store_ps(out + (oi * s->ow + oj) * DWC_V, acc);
            }
        for (int l = 0; l < cb; l++) {
            float *q = j->y + ((size_t)n * s->cout + (size_t)(c0 + l)) * ohw;
            const float bias = j->b ? j->b[c0 + l] : 0.0f;
            for (size_t o = 0; o < ohw; o++) q[o] = out[o * DWC_V + l] + bias;
        }
    }
}

DWC_AVX512 static void dwc_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwcJob *j = arg;
    const NnConvShape *s = j->s;
    const int wp = j->wp, nt = j->nt;
    const size_t hw = j->hw, ohw = j->ohw;
    float acc[DWC_MAX_IN * DWC_V] __attribute__((aligned(64)));
    float g[DWC_MAX_OUT * DWC_V] __attribute__((aligned(64)));
    for (int64_t it = b; it < e; it++) {
        int64_t n;
        int c0, cb;
        dwc_item(j, it, &n, &c0, &cb);
        memset(acc, 0, j->block * sizeof *acc);
        if (cb < DWC_V) memset(g, 0, ohw * DWC_V * sizeof *g);
        for (int l = 0; l < cb; l++) {
            const float *p = j->dy + ((size_t)n * s->cout + (size_t)(c0 + l)) * ohw;
            for (size_t o = 0; o < ohw; o++) g[o * DWC_V + l] = p[o];
        }
        const float *wt = j->wt + (size_t)(c0 / DWC_V) * nt * DWC_V;
        for (int oi = 0; oi < s->oh; oi++)
            for (int oj = 0; oj < s->ow; oj++) {
                const __m512 d = _mm512_load_ps(g + (oi * s->ow + oj) * DWC_V);
                float *base = acc + ((size_t)oi * s->stride * wp + (size_t)oj * s->stride) * DWC_V;
                for (int ki = 0; ki < s->kh; ki++)
                    for (int kj = 0; kj < s->kw; kj++) {
                        float *p = base + ((size_t)ki * wp + kj) * DWC_V;
                        _mm512_store_ps(p, _mm512_fmadd_ps(_mm512_loadu_ps(wt + (ki * s->kw + kj) * DWC_V), d,
                                                           _mm512_load_ps(p)));
                    }
            }
        for (int l = 0; l < cb; l++) {
            float *q = j->dx + ((size_t)n * s->cin + (size_t)(c0 + l)) * hw;
            for (int i = 0; i < s->h; i++)
                for (int k = 0; k < s->w; k++)
                    q[i * s->w + k] += acc[((size_t)(i + s->pad) * wp + k + s->pad) * DWC_V + l];
        }
    }
}

static void dwc_run(NnBackend *be, const NnConvShape *s, const float *w, DwcJob *j, CpuTask fn)
{
    j->s = s;
    j->nblk = (s->cin + DWC_V - 1) / DWC_V;
    j->wp = s->w + 2 * s->pad;
    j->nt = s->kh * s->kw;
    j->hw = (size_t)s->h * s->w;
    j->ohw = (size_t)s->oh * s->ow;
    j->block = (size_t)(s->h + 2 * s->pad) * j->wp * DWC_V;
    float *wt = dwc_weights(s, w, j->nblk);
    j->wt = wt;
    cpu_for(be, (int64_t)s->n * j->nblk, 2, fn, j);
    free(wt);
}

void cpu_dwc_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y)
{
    DwcJob j = {.x = x, .b = b, .y = y};
    dwc_run(be, s, w, &j, dwc_fwd_task);
}

void cpu_dwc_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx)
{
    DwcJob j = {.dy = dy, .dx = dx};
    dwc_run(be, s, w, &j, dwc_bwd_data_task);
}

#else /* !DWC_X86: cpu_dwc_ok is 0 */

void cpu_dwc_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y)
{
    (void)be, (void)s, (void)x, (void)w, (void)b, (void)y;
    dd_die(DD_EXIT_DATA, "nn: cpu: AVX-512 depthwise convolution off x86");
}

void cpu_dwc_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx)
{
    (void)be, (void)s, (void)dy, (void)w, (void)dx;
    dd_die(DD_EXIT_DATA, "nn: cpu: AVX-512 depthwise convolution off x86");
}

#endif

/* ops_shape.c - front-ends of the layout ops: flatten, concat, narrow, channel shuffle and
 * interleave, bilinear resize and crop-resize, roll, horizontal flip. */
#include "libcommon/nn/nn_impl.h"

#include <limits.h>

/* ---- flatten (a copy: its gradient is its own buffer, added back into x's) ---- */

static void copy_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, axpy);
    nn->be->axpy(nn->be, nn_numel(x), 1.0f, nn_dout(e), nn_grad_of(nn, x));
}

NnVar *nn_flatten(Nn *nn, NnVar *x)
{
    nn_check_f32("flatten", x, -1);
    nn_check(x->v.ndim >= 1, "flatten", "scalar input");
    int64_t n = x->v.shape[0], rest = n ? nn_numel(x) / n : 0;
    NnVar *y = nn_new_var(nn, 2, (int64_t[]){n, rest});
    nn->be->copy(nn->be, nn_f(y), nn_f(x), (size_t)nn_numel(x) * sizeof(float));
    nn_record(nn, copy_backward, y, 1, &x);
    return y;
}

/* ---- concat ---- */

/* Entry args: iarg[0] = dim; rows = prod(shape[:dim]); each input i is a block of len_i columns at
 * column offset off_i of the output's rows of `total` columns. */
static void concat_geom(const NnVar *x, int dim, int64_t *rows, int64_t *len)
{
    *rows = 1;
    for (int d = 0; d < dim; d++) *rows *= x->v.shape[d];
    *len = 1;
    for (int d = dim; d < x->v.ndim; d++) *len *= x->v.shape[d];
}

static void concat_backward(Nn *nn, const NnEntry *e)
{
    int dim = e->iarg[0];
    int64_t rows, total, off = 0;
    concat_geom(e->out, dim, &rows, &total);
    NN_BE(nn, block_copy);
    for (int i = 0; i < e->nin; i++) {
        int64_t r, len;
        concat_geom(e->in[i], dim, &r, &len);
        float *dx = nn_grad_of(nn, e->in[i]);
        if (dx) nn->be->block_copy(nn->be, rows, len, nn_dout(e) + off, total, dx, len, 1);
        off += len;
    }
}

NnVar *nn_concat(Nn *nn, int n, NnVar **xs, int dim)
{
    nn_check(n >= 1, "concat", "no inputs");
    nn_check_f32("concat", xs[0], -1);
    int nd = xs[0]->v.ndim;
    nn_check(dim >= 0 && dim < nd, "concat", "dim %d of %d", dim, nd);
    int64_t shape[DD_MAXDIM];
    for (int d = 0; d < nd; d++) shape[d] = xs[0]->v.shape[d];
    for (int i = 1; i < n; i++) {
        nn_check_f32("concat", xs[i], nd);
        for (int d = 0; d < nd; d++)
            nn_check(d == dim || xs[i]->v.shape[d] == shape[d], "concat",
                     "input %d differs at dim %d", i, d);
        shape[dim] += xs[i]->v.shape[dim];
    }
    NnVar *y = nn_new_var(nn, nd, shape);
    int64_t rows, total, off = 0;
    concat_geom(y, dim, &rows, &total);
    NN_BE(nn, block_copy);
    for (int i = 0; i < n; i++) {
        int64_t r, len;
        concat_geom(xs[i], dim, &r, &len);
        nn->be->block_copy(nn->be, rows, len, nn_f(xs[i]), len, nn_f(y) + off, total, 0);
        off += len;
    }
    NnEntry *e = nn_record(nn, concat_backward, y, n, xs);
    if (e) e->iarg[0] = dim;
    return y;
}

/* ---- channel shuffle ---- */

static void shuffle_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    const int64_t *s = x->v.shape;
    NN_BE(nn, shuffle);
    nn->be->shuffle(nn->be, s[0], (int)s[1], s[2] * s[3], e->iarg[0], 1, 1, nn_dout(e),
                    nn_grad_of(nn, x));
}

NnVar *nn_channel_shuffle(Nn *nn, NnVar *x, int groups)
{
    nn_check_f32("channel_shuffle", x, 4);
    const int64_t *s = x->v.shape;
    nn_check(groups >= 1 && s[1] % groups == 0, "channel_shuffle", "%lld channels, %d groups",
             (long long)s[1], groups);
    NnVar *y = nn_new_var(nn, 4, s);
    NN_BE(nn, shuffle);
    nn->be->shuffle(nn->be, s[0], (int)s[1], s[2] * s[3], groups, 0, 0, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, shuffle_backward, y, 1, &x);
    if (e) e->iarg[0] = groups;
    return y;
}

/* ---- narrow: a slice along one dim (a copy) ---- */

/* Entry args: iarg[0] = dim, iarg[1] = start. */
static void narrow_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    int dim = e->iarg[0];
    int64_t rows, total, r, len;
    concat_geom(x, dim, &rows, &total);
    concat_geom(e->out, dim, &r, &len);
    int64_t off = (int64_t)e->iarg[1] * (total / x->v.shape[dim]);
    NN_BE(nn, block_copy);
    nn->be->block_copy(nn->be, rows, len, nn_dout(e), len, nn_grad_of(nn, x) + off, total, 1);
}

NnVar *nn_narrow(Nn *nn, NnVar *x, int dim, int64_t start, int64_t len)
{
    nn_check_f32("narrow", x, -1);
    int nd = x->v.ndim;
    nn_check(dim >= 0 && dim < nd, "narrow", "dim %d of %d", dim, nd);
    nn_check(start >= 0 && len >= 1 && start <= x->v.shape[dim] - len && start <= INT_MAX, "narrow",
             "[%lld, %lld) of %lld", (long long)start, (long long)(start + len),
             (long long)x->v.shape[dim]);
    int64_t shape[DD_MAXDIM];
    for (int d = 0; d < nd; d++) shape[d] = x->v.shape[d];
    shape[dim] = len;
    NnVar *y = nn_new_var(nn, nd, shape);
    int64_t rows, total, r, ylen;
    concat_geom(x, dim, &rows, &total);
    concat_geom(y, dim, &r, &ylen);
    NN_BE(nn, block_copy);
    nn->be->block_copy(nn->be, rows, ylen, nn_f(x) + start * (total / x->v.shape[dim]), total, nn_f(y),
                       ylen, 0);
    NnEntry *e = nn_record(nn, narrow_backward, y, 1, &x);
    if (e) {
        e->iarg[0] = dim;
        e->iarg[1] = (int)start;
    }
    return y;
}

/* ---- channel interleave: channel_shuffle(concat([a, b], 1), 2) in one copy ---- */

/* Output channel 2k is a's k and 2k+1 is b's k: a and b are [N*C] rows of hw floats, written to
 * every other row of y (rows of 2*hw), which block_copy does with a stride. */
static void interleave_backward(Nn *nn, const NnEntry *e)
{
    const int64_t *s = e->in[0]->v.shape;
    int64_t rows = s[0] * s[1], hw = s[2] * s[3];
    NN_BE(nn, block_copy);
    for (int i = 0; i < 2; i++) {
        float *dx = nn_grad_of(nn, e->in[i]);
        if (dx) nn->be->block_copy(nn->be, rows, hw, nn_dout(e) + i * hw, 2 * hw, dx, hw, 1);
    }
}

NnVar *nn_channel_interleave(Nn *nn, NnVar *a, NnVar *b)
{
    nn_check_f32("channel_interleave", a, 4);
    nn_check_f32("channel_interleave", b, 4);
    const int64_t *s = a->v.shape;
    for (int d = 0; d < 4; d++)
        nn_check(b->v.shape[d] == s[d], "channel_interleave", "shapes differ at dim %d", d);
    NnVar *y = nn_new_var(nn, 4, (int64_t[]){s[0], 2 * s[1], s[2], s[3]});
    int64_t rows = s[0] * s[1], hw = s[2] * s[3];
    NN_BE(nn, block_copy);
    nn->be->block_copy(nn->be, rows, hw, nn_f(a), hw, nn_f(y), 2 * hw, 0);
    nn->be->block_copy(nn->be, rows, hw, nn_f(b), hw, nn_f(y) + hw, 2 * hw, 0);
    nn_record(nn, interleave_backward, y, 2, (NnVar *[]){a, b});
    return y;
}

/* ---- bilinear resize and crop-resize ---- */

static NnResample resample_geom(const NnEntry *e)
{
    const NnVar *x = e->in[0];
    const int *a = e->iarg;
    return (NnResample){x->v.shape[0] * x->v.shape[1], (int)x->v.shape[2], (int)x->v.shape[3],
                        a[0], a[1], a[2], a[3], a[4], a[5]};
}

static void resample_backward(Nn *nn, const NnEntry *e)
{
    NnResample r = resample_geom(e);
    NN_BE(nn, resample_bwd);
    nn->be->resample_bwd(nn->be, &r, nn_dout(e), nn_grad_of(nn, e->in[0]));
}

NnVar *nn_crop_resize(Nn *nn, NnVar *x, int top, int left, int h, int w, int oh, int ow)
{
    nn_check_f32("crop_resize", x, 4);
    const int64_t *s = x->v.shape;
    nn_check(top >= 0 && left >= 0 && h >= 1 && w >= 1 && top + h <= s[2] && left + w <= s[3],
             "crop_resize", "box %d,%d %dx%d outside %lldx%lld", top, left, h, w, (long long)s[2],
             (long long)s[3]);
    nn_check(oh >= 1 && ow >= 1, "crop_resize", "bad output size %dx%d", oh, ow);
    NnResample r = {s[0] * s[1], (int)s[2], (int)s[3], top, left, h, w, oh, ow};
    NnVar *y = nn_new_var(nn, 4, (int64_t[]){s[0], s[1], oh, ow});
    NN_BE(nn, resample_fwd);
    nn->be->resample_fwd(nn->be, &r, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, resample_backward, y, 1, &x);
    if (e) {
        int a[6] = {top, left, h, w, oh, ow};
        for (int i = 0; i < 6; i++) e->iarg[i] = a[i];
    }
    return y;
}

NnVar *nn_resize_bilinear(Nn *nn, NnVar *x, int oh, int ow)
{
    nn_check_f32("resize_bilinear", x, 4);
    return nn_crop_resize(nn, x, 0, 0, (int)x->v.shape[2], (int)x->v.shape[3], oh, ow);
}

/* ---- roll and flip ---- */

static void roll_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    const int64_t *s = x->v.shape;
    NN_BE(nn, roll);
    nn->be->roll(nn->be, s[0] * s[1], (int)s[2], (int)s[3], -e->iarg[0], -e->iarg[1], 1,
                 nn_dout(e), nn_grad_of(nn, x));
}

NnVar *nn_roll(Nn *nn, NnVar *x, int sh, int sw)
{
    nn_check_f32("roll", x, 4);
    const int64_t *s = x->v.shape;
    int h = (int)s[2], w = (int)s[3];
    sh = ((sh % h) + h) % h;
    sw = ((sw % w) + w) % w;
    NnVar *y = nn_new_var(nn, 4, s);
    NN_BE(nn, roll);
    nn->be->roll(nn->be, s[0] * s[1], h, w, sh, sw, 0, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, roll_backward, y, 1, &x);
    if (e) {
        e->iarg[0] = sh;
        e->iarg[1] = sw;
    }
    return y;
}

static void flip_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    const int64_t *s = x->v.shape;
    NN_BE(nn, flip_w);
    nn->be->flip_w(nn->be, s[0] * s[1], (int)s[2], (int)s[3], 1, nn_dout(e), nn_grad_of(nn, x));
}

NnVar *nn_flip_w(Nn *nn, NnVar *x)
{
    nn_check_f32("flip_w", x, 4);
    const int64_t *s = x->v.shape;
    NnVar *y = nn_new_var(nn, 4, s);
    NN_BE(nn, flip_w);
    nn->be->flip_w(nn->be, s[0] * s[1], (int)s[2], (int)s[3], 0, nn_f(x), nn_f(y));
    nn_record(nn, flip_backward, y, 1, &x);
    return y;
}

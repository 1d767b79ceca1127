/* ops_conv.c - front-ends of conv2d, linear and the pools: shape checks, tape entries, dispatch. */
#include "libcommon/nn/nn_impl.h"

/* ---- conv2d ---- */

static NnConvShape conv_shape(const NnEntry *e)
{
    const int *a = e->iarg;
    return (NnConvShape){a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
                         a[12]};
}

static void conv2d_backward(Nn *nn, const NnEntry *e)
{
    NnConvShape s = conv_shape(e);
    NnVar *x = e->in[0], *w = e->in[1], *b = e->in[2];
    const float *dy = nn_dout(e);
    float *dx = nn_grad_of(nn, x);
    if (dx) {
        NN_BE(nn, conv2d_bwd_data);
        nn->be->conv2d_bwd_data(nn->be, &s, dy, nn_f(w), dx);
        nn->flops += nn_conv_flops(&s);
    }
    float *dw = nn_grad_of(nn, w), *db = nn_grad_of(nn, b);
    if (dw || db) {
        NN_BE(nn, conv2d_bwd_filter);
        nn->be->conv2d_bwd_filter(nn->be, &s, dy, nn_f(x), dw, db);
        if (dw) nn->flops += nn_conv_flops(&s);
    }
}

NnVar *nn_conv2d(Nn *nn, NnVar *x, NnVar *w, NnVar *b, int stride, int pad, int dilation, int groups)
{
    nn_check_f32("conv2d", x, 4);
    nn_check_f32("conv2d", w, 4);
    const int64_t *xs = x->v.shape, *ws = w->v.shape;
    nn_check(stride >= 1 && pad >= 0 && dilation >= 1 && groups >= 1, "conv2d",
             "bad stride %d / pad %d / dilation %d / groups %d", stride, pad, dilation, groups);
    nn_check(xs[1] % groups == 0 && ws[0] % groups == 0 && ws[1] * groups == xs[1], "conv2d",
             "input channels %lld, weight [%lld,%lld,..], groups %d disagree", (long long)xs[1],
             (long long)ws[0], (long long)ws[1], groups);
    if (b) {
        nn_check_f32("conv2d", b, 1);
        nn_check(b->v.shape[0] == ws[0], "conv2d", "bias has %lld entries for %lld channels",
                 (long long)b->v.shape[0], (long long)ws[0]);
    }
    int64_t oh = (xs[2] + 2 * pad - dilation * (ws[2] - 1) - 1) / stride + 1;
    int64_t ow = (xs[3] + 2 * pad - dilation * (ws[3] - 1) - 1) / stride + 1;
    nn_check(oh >= 1 && ow >= 1, "conv2d", "kernel larger than the padded input");
    NnConvShape s = {(int)xs[0], (int)xs[1], (int)xs[2], (int)xs[3], (int)ws[0], (int)ws[2],
                     (int)ws[3], (int)oh, (int)ow, stride, pad, dilation, groups};
    NnVar *y = nn_new_var(nn, 4, (int64_t[]){xs[0], ws[0], oh, ow});
    NN_BE(nn, conv2d_fwd);
    nn->be->conv2d_fwd(nn->be, &s, nn_f(x), nn_f(w), b ? nn_f(b) : NULL, nn_f(y));
    nn->flops += nn_conv_flops(&s);
    NnEntry *e = nn_record(nn, conv2d_backward, y, 3, (NnVar *[]){x, w, b});
    if (e) {
        /* backward-data reads w, backward-filter x: a frozen network's backward needs no input */
        if (x->requires_grad) nn_keep(e, w);
        if (w->requires_grad || (b && b->requires_grad)) nn_keep(e, x);
        int a[13] = {s.n,  s.cin, s.h,      s.w,   s.cout, s.kh,    s.kw,
                     s.oh, s.ow,  s.stride, s.pad, s.dil,  s.groups};
        for (int i = 0; i < 13; i++) e->iarg[i] = a[i];
    }
    return y;
}

/* ---- linear ---- */

static void linear_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0], *w = e->in[1], *b = e->in[2];
    float *dx = nn_grad_of(nn, x), *dw = nn_grad_of(nn, w), *db = nn_grad_of(nn, b);
    NN_BE(nn, linear_bwd);
    nn->be->linear_bwd(nn->be, e->iarg[0], e->iarg[1], e->iarg[2], nn_dout(e), nn_f(x), nn_f(w),
                       dx, dw, db);
    nn->flops += ((dx != NULL) + (dw != NULL)) * nn_linear_flops(e->iarg[0], e->iarg[1], e->iarg[2]);
}

NnVar *nn_linear(Nn *nn, NnVar *x, NnVar *w, NnVar *b)
{
    nn_check_f32("linear", x, 2);
    nn_check_f32("linear", w, 2);
    int64_t n = x->v.shape[0], in = x->v.shape[1], out = w->v.shape[0];
    nn_check(w->v.shape[1] == in, "linear", "input has %lld features, weight expects %lld",
             (long long)in, (long long)w->v.shape[1]);
    if (b) {
        nn_check_f32("linear", b, 1);
        nn_check(b->v.shape[0] == out, "linear", "bias has %lld entries for %lld outputs",
                 (long long)b->v.shape[0], (long long)out);
    }
    NnVar *y = nn_new_var(nn, 2, (int64_t[]){n, out});
    NN_BE(nn, linear_fwd);
    nn->be->linear_fwd(nn->be, (int)n, (int)in, (int)out, nn_f(x), nn_f(w), b ? nn_f(b) : NULL,
                       nn_f(y));
    nn->flops += nn_linear_flops((int)n, (int)in, (int)out);
    NnEntry *e = nn_record(nn, linear_backward, y, 3, (NnVar *[]){x, w, b});
    if (e) {
        if (x->requires_grad) nn_keep(e, w);
        if (w->requires_grad || (b && b->requires_grad)) nn_keep(e, x);
        e->iarg[0] = (int)n;
        e->iarg[1] = (int)in;
        e->iarg[2] = (int)out;
    }
    return y;
}

/* ---- pools ---- */

static NnPoolShape pool_shape(const NnEntry *e)
{
    const int *a = e->iarg;
    const NnVar *x = e->in[0];
    return (NnPoolShape){x->v.shape[0] * x->v.shape[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6]};
}

static void save_pool(NnEntry *e, const NnPoolShape *s)
{
    int a[7] = {s->h, s->w, s->oh, s->ow, s->k, s->stride, s->pad};
    for (int i = 0; i < 7; i++) e->iarg[i] = a[i];
}

static NnPoolShape pool_check(const char *op, const NnVar *x, int k, int stride, int pad)
{
    nn_check_f32(op, x, 4);
    nn_check(k >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= k, op,
             "bad kernel %d / stride %d / pad %d", k, stride, pad);
    const int64_t *xs = x->v.shape;
    int64_t oh = (xs[2] + 2 * pad - k) / stride + 1, ow = (xs[3] + 2 * pad - k) / stride + 1;
    nn_check(oh >= 1 && ow >= 1, op, "kernel %d larger than the padded input", k);
    return (NnPoolShape){xs[0] * xs[1], (int)xs[2], (int)xs[3], (int)oh, (int)ow, k, stride, pad};
}

static void maxpool_backward(Nn *nn, const NnEntry *e)
{
    NnPoolShape s = pool_shape(e);
    NN_BE(nn, maxpool_bwd);
    nn->be->maxpool_bwd(nn->be, &s, e->save[0], nn_dout(e), nn_grad_of(nn, e->in[0]));
}

NnVar *nn_maxpool2d(Nn *nn, NnVar *x, int k, int stride, int pad)
{
    NnPoolShape s = pool_check("maxpool2d", x, k, stride, pad);
    NnVar *y = nn_new_var(nn, 4, (int64_t[]){x->v.shape[0], x->v.shape[1], s.oh, s.ow});
    nn_check(k <= NN_POOL_KMAX, "maxpool2d", "kernel %d wider than %d", k, NN_POOL_KMAX);
    int grad = nn->grad && x->requires_grad;
    uint8_t *idx = grad ? nn_dev_alloc(nn, (size_t)nn_numel(y), 0) : NULL;
    NN_BE(nn, maxpool_fwd);
    nn->be->maxpool_fwd(nn->be, &s, nn_f(x), nn_f(y), idx);
    NnEntry *e = nn_record(nn, maxpool_backward, y, 1, &x);
    if (e) {
        save_pool(e, &s);
        e->save[0] = idx;
    }
    return y;
}

static void avgpool_backward(Nn *nn, const NnEntry *e)
{
    NnPoolShape s = pool_shape(e);
    NN_BE(nn, avgpool_bwd);
    nn->be->avgpool_bwd(nn->be, &s, nn_dout(e), nn_grad_of(nn, e->in[0]));
}

NnVar *nn_avgpool2d(Nn *nn, NnVar *x, int k, int stride, int pad)
{
    NnPoolShape s = pool_check("avgpool2d", x, k, stride, pad);
    NnVar *y = nn_new_var(nn, 4, (int64_t[]){x->v.shape[0], x->v.shape[1], s.oh, s.ow});
    NN_BE(nn, avgpool_fwd);
    nn->be->avgpool_fwd(nn->be, &s, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, avgpool_backward, y, 1, &x);
    if (e) save_pool(e, &s);
    return y;
}

static void adaptive_backward(Nn *nn, const NnEntry *e)
{
    NnPoolShape s = pool_shape(e);
    NN_BE(nn, adaptive_avgpool_bwd);
    nn->be->adaptive_avgpool_bwd(nn->be, &s, nn_dout(e), nn_grad_of(nn, e->in[0]));
}

NnVar *nn_adaptive_avgpool2d(Nn *nn, NnVar *x, int oh, int ow)
{
    nn_check_f32("adaptive_avgpool2d", x, 4);
    nn_check(oh >= 1 && ow >= 1, "adaptive_avgpool2d", "bad output size %dx%d", oh, ow);
    const int64_t *xs = x->v.shape;
    NnPoolShape s = {xs[0] * xs[1], (int)xs[2], (int)xs[3], oh, ow, 0, 0, 0};
    NnVar *y = nn_new_var(nn, 4, (int64_t[]){xs[0], xs[1], oh, ow});
    NN_BE(nn, adaptive_avgpool_fwd);
    nn->be->adaptive_avgpool_fwd(nn->be, &s, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, adaptive_backward, y, 1, &x);
    if (e) save_pool(e, &s);
    return y;
}

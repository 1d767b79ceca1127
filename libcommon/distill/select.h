/* select.h - RDED patch selection (ddpipe-method(7) section 1): the seeded candidate subset, the random
 * square crops, teacher scoring on a mean-coloured canvas, the per-class ranking and the f x f
 * stitching. The patchsel filter drives these over a stream; unit tests call them directly.
 *
 * Ranking: an entry (one source image's best crop) is better than another when its CE is lower;
 * equal CEs are ordered by the source record's index within its class (input order), so the order
 * never depends on thread count, batch size or when an entry was offered.
 *
 * Keying: every draw of a class (its candidate subset, its candidates' crop boxes) is keyed by the
 * seed, the class and positions counted among that class's records in input order, never by a
 * record's position in the whole input. A class's selection therefore depends only on its own
 * records and the seed: a class slice of the input (tscat --classes) or a reordering of the other
 * classes selects the same patches for it, which is what a class-sharded run relies on.
 *
 * Ownership: a SelTop owns its entries' pixel buffers (malloc'd; offered buffers are taken over
 * and freed when rejected or evicted); sel_top_free releases them. A SelScorer borrows the model
 * and context it was made with (they must outlive it) and owns its canvases and queued crops.
 * The SelPlan and sel_write_class section at the end takes the patchsel filter's passes over a
 * stream: a SelPlan owns its arrays (sel_plan_free); writers passed in are borrowed.
 * Errors: functions returning int return 0 or -1 with dd_err set.
 */
#ifndef DD_DISTILL_SELECT_H
#define DD_DISTILL_SELECT_H

#include <stdint.h>

#include "formats/stream.h"
#include "libcommon/distill/augment.h"
#include "libcommon/models/model.h"

#define SEL_KEY_MAX 64

/* The seeded uniform subset of a class: the first k = min(k, n) entries of a Fisher-Yates
 * permutation of 0..n-1 drawn from (seed, AUG_STREAM_SUBSET, cls), written to out[0..k) in
 * permutation order (so a shorter prefix is the subset for a smaller k). Positions count the
 * class's records in input order. Returns k. */
int64_t sel_subset(uint64_t seed, int cls, int64_t n, int64_t k, int64_t *out);

/* The `ncrops` square crop boxes of the record of class `cls` whose index among that class's
 * records (input order) is `idx`, on an H x W image: aug_rrc with scale U(0.08, 1) and ratio (1, 1),
 * drawn in order from (seed, AUG_STREAM_PATCHSEL, cls << 32 | idx). 0 <= cls, 0 <= idx < 2^32. */
void sel_crop_boxes(uint64_t seed, int cls, int64_t idx, int H, int W, int ncrops, AugBox *out);

/* The scoring canvas: canvas [C,H,W] (=) filled with mean[c] (the model's mean: zero in normalized
 * space) with the crop [C,side,side] pasted at ((H-side)/2, (W-side)/2). side <= H, W. */
void sel_canvas(const float *crop, int C, int side, const float *mean, int H, int W, float *canvas);

/* Per-sample softmax cross-entropy of logits [n,K] (float) with labels[i], in double:
 * ce[i] = logsumexp(logits[i]) - logits[i][labels[i]]. */
void sel_ce(const float *logits, int n, int K, const int64_t *labels, double *ce);

typedef struct {
    double ce;                  /* rank key: lower is better (the score is -ce) */
    int64_t src;                /* source record's index within its class (input order): tie-break */
    AugBox box;                 /* crop box in the source image */
    char key[SEL_KEY_MAX + 1];  /* source record's key */
    float *pix;                 /* crop [C,side,side], owned by the SelTop once offered */
} SelEntry;

/* The best `keep` entries of one class. */
typedef struct {
    int keep, n;
    SelEntry *e;
} SelTop;

void sel_top_init(SelTop *t, int keep);
/* Offers an entry (copied; its pix is taken over). Kept when the list is not full or it is better
 * than the worst kept entry (which is then evicted). Returns 1 if kept, 0 if rejected. */
int sel_top_offer(SelTop *t, const SelEntry *e);
/* Sorts the kept entries best first: rank r is t->e[r]. */
void sel_top_sort(SelTop *t);
void sel_top_free(SelTop *t);

/* Distilled image m of a class from its sorted list: the f x f grid whose cell k (row-major: row
 * k / f, column k % f) holds the crop of rank k * ipc + m. out [C, f*side, f*side] (=). Needs
 * t->n >= ipc * f * f (checked by the caller with sel_top_need). */
void sel_stitch(const SelTop *t, int ipc, int f, int m, int C, int side, float *out);
/* 0 when the class has the ipc * f * f ranks stitching needs, else -1 with dd_err naming it. */
int sel_top_need(const SelTop *t, int cls, int ipc, int f);

/* ---- scoring a stream of candidates in batches ---- */

typedef struct SelScorer SelScorer;

/* A scorer for `nclasses` classes keeping the best `keep` crops per class. Each added image gets
 * `ncrops` crops of side `side` (resized from their boxes with img_crop_resize_aa), scored on canvases
 * of the image's size by m in eval mode without gradients, `batch` canvases per forward (at least
 * ncrops). The best crop of each image is offered to its class's SelTop. */
SelScorer *sel_scorer_new(Model *m, Nn *nn, int nclasses, int keep, int ncrops, int side, int batch,
                          uint64_t seed);
/* Fixes the canvas at [C,H,W] before the first image is added (side <= H, W). Without it the
 * first image's shape is the canvas and every image must have it; with it images of C channels
 * may have any size: each image's crop boxes are drawn on its own H x W (as RDED's reference
 * crops the original images), the crops resized to side and centred on the canvas. */
int sel_scorer_canvas(SelScorer *s, int C, int H, int W);
/* Queues the crops of one candidate image [C,H,W] (pixels) of class `label` whose index among
 * that class's records (input order) is `src` (keys its crop boxes, see sel_crop_boxes; the
 * tie-break of its entry); scores the queue first when it could not take them. file (kept, not
 * copied) and at name the record in its input for messages: an error (dd_err) names its record,
 * this one's or a queued one's whose scores are not finite, as "FILE: record AT (KEY): ...". */
int sel_scorer_add(SelScorer *s, const char *file, int64_t at, int64_t src, const char *key, int label,
                   const float *img, int C, int H, int W);
/* Scores everything queued. */
int sel_scorer_flush(SelScorer *s);
/* The list of class c (borrowed; call after a flush covering the class's candidates). */
SelTop *sel_scorer_top(SelScorer *s, int c);
void sel_scorer_free(SelScorer *s);

/* ---- over a stream (the patchsel filter's passes) ---- */

/* The first pass over an input and the candidates chosen from it. */
typedef struct {
    int64_t n;                  /* records */
    int ncls;                   /* classes of the input's header */
    int C, H, W;                /* the first record's image shape */
    int varied;                 /* 1 when the images' H x W differ (their C may not) */
    int *label;                 /* [n] each record's class */
    int64_t *count;             /* [ncls] records per class */
    int64_t *role;              /* [n] rank in its class's subset, -1 when not a candidate (sel_plan_subsets) */
    int64_t *within;            /* [n] index among its class's records (input order): keys its crops */
    int64_t *last;              /* [ncls] index of the class's last candidate in input order, -1 if none */
} SelPlan;

/* Reads every record of `in` into p (p is overwritten): each needs a label in the header's class
 * list and an image [C,H,W] with the first record's C; labels are kept, images are not. No
 * records is no error (p->n = 0). 0, or -1 with dd_err ("FILE: record I (KEY): ..." or the reader's message)
 * and p freed. */
int sel_plan_scan(TsInput *in, SelPlan *p);
/* The candidates of every class: class c's are the first min(count[c], want) of its records in
 * sel_subset(seed, c, ...)'s order (want >= 1). Fills p->role, p->within and p->last. */
void sel_plan_subsets(SelPlan *p, uint64_t seed, int64_t want);
/* Frees p's arrays (p may be zeroed or partly filled). */
void sel_plan_free(SelPlan *p);

/* --method random's candidate: the whole image im [C,h,w] (pixels; taken over: im->owns is
 * cleared) of the record `key`, of rank `rank` in its class's subset and index `src` among its
 * class's records, offered to t as an entry ranked by `rank` with the whole image as its box.
 * res > 0: the entry's pixels are im resized (shorter side to res) and centre-cropped to
 * [C,res,res] (torchvision's Resize(res) + CenterCrop(res)), and im is left to the caller. */
void sel_top_offer_whole(SelTop *t, int64_t rank, int64_t src, const char *key, Tensor *im, int res);

/* How a class's kept entries become images. */
typedef struct {
    int C, f, side;             /* rded: f x f cells of side x side (sel_stitch), C channels */
    int whole, h, w;            /* --method random (f = 1): each entry's pixels as they are, [C,h,w] */
} SelLayout;

/* Sorts class cls's list t and writes, for each of the nipc IPCs ipc[k], its ipc[k] images to
 * w[k]: records c%04d_i%04d (cls, m) in m order with "image" F32 (layout l), "label" cls and meta
 * {"cells":[{"src":KEY,"box":[top,left,h,w],"rank":R,"score":-CE}, ...]}, one entry per cell j
 * of the f x f grid in row-major order (R = j * ipc[k] + m; no score with whole images). Frees
 * t's entries, also on error. 0, or -1 with dd_err (too few entries: sel_top_need; a writer's error). */
int sel_write_class(TsWriter *const *w, const int *ipc, int nipc, SelTop *t, int cls, const SelLayout *l);

#endif

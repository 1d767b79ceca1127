/* relabel.h - FKD soft labels (ddpipe-method(7) section 3): per epoch a seeded batch order, per image one
 * RandomResizedCrop + flip, per batch CutMix, and the teachers' mean raw logits on the mixed batch,
 * written as the replay stream of train.h (one record per (epoch, batch)) that evaltrain --labels
 * replays. Also INFER's static labels (one per un-augmented image) and the top-k storage option
 * with its reconstruction.
 *
 * Randomness (dd_rng, never dependent on threads or on which process runs an epoch):
 *   batch order of epoch e     RELABEL_STREAM_ORDER, index e
 *   crop + flip of image i     AUG_STREAM_RELABEL, index e * 2^32 + i (aug_rrc, then flip p = 0.5)
 *   CutMix of batch b          RELABEL_STREAM_BATCH, index e * 2^32 + b (perm, lam ~ Beta(1,1), box)
 *   teacher dropout            nn_set_rng(seed, e * batches_per_epoch + b)
 *
 * Ownership: models, the Nn context, data and writers passed in are borrowed; outputs are the
 * caller's buffers (written, =). Errors: -1 with dd_err set (dd_errcode DD_EXIT_DEVICE for device
 * failures, DD_EXIT_DATA otherwise).
 */
#ifndef DD_RELABEL_H
#define DD_RELABEL_H

#include <stdint.h>

#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "libcommon/distill/train.h"
#include "libcommon/models/model.h"

/* dd_rng stream ids of relabel's per-epoch and per-batch draws, clear of augment.h's and train.h's. */
enum { RELABEL_STREAM_ORDER = 66, RELABEL_STREAM_BATCH = 67 };

typedef enum {
    RELABEL_BN_BATCH = 0,   /* BSSL: train-mode BN on each half of the batch, dropout live */
    RELABEL_BN_EVAL = 1     /* running statistics, dropout off */
} RelabelBn;

typedef struct {
    int epochs, batch;
    RelabelBn bn;
    uint64_t seed;
    int topk;               /* 0 or >= K: every logit ("logits" F16); else the top-k fields below */
    const char *input;      /* the data's name, first in relabel_run's messages (NULL: none) */
} RelabelConf;

/* Checks a teacher against the data: num_classes == ts_header_nclasses(h), the class names in the
 * weights' metadata (when present) equal to the header's, and model_check_input(C,H,W). -1 with
 * dd_err naming `wname` and `dname` (and both class names at the first difference). */
int relabel_check_teacher(const Model *m, const char *wname, const TsHeader *h, const char *dname, int C, int H,
                          int W);

/* The batch order of epoch `epoch`: a permutation of 0..n-1 into order[n]. */
void relabel_order(uint64_t seed, int64_t epoch, int64_t n, int64_t *order);

/* The draws of batch `bi` of epoch `epoch` holding the n images idx[0..n) (record indexes of the
 * training set): fills b->epoch, batch, n, index, crop (RandomResizedCrop of the H x W image, scale
 * 0.08..1, ratio 3/4..4/3), flip, perm, lam, box (trainaug_cutmix_box). b's arrays are the caller's,
 * sized >= n; b->K and b->logits are untouched. */
void relabel_plan(uint64_t seed, int64_t epoch, int64_t bi, const int64_t *idx, int n, int H, int W,
                  TrainReplay *b);

/* The mixed batch the teachers see, x [b->n, C, H, W] from d: per image crop (img_crop_resize to
 * H x W) and flip, then CutMix of the batch (trainaug_cutmix) - exactly evaltrain's replay. */
void relabel_images(const TrainData *d, const TrainReplay *b, float *x);

/* Mean over the nt teachers of their raw logits on x [n,C,H,W] into logits [n,K] (=), grad off.
 * RELABEL_BN_BATCH: train-mode forward on images [0, n/2) and [n/2, n) separately (floor; the
 * reference's relabel.py: split_point = n // 2; one image: one pass), each teacher's BN buffers restored
 * afterwards so the running statistics never move; dropout drawn from nn_set_rng(seed, step).
 * RELABEL_BN_EVAL: one eval-mode forward. -1 with dd_err on a non-finite logit. */
int relabel_logits(Nn *nn, Model **t, int nt, RelabelBn bn, const float *x, int n, int C, int H, int W,
                   uint64_t seed, uint64_t step, float *logits);

/* The whole FKD run: c->epochs epochs of ceil(d->n / c->batch) batches, one record per batch put
 * to w in (epoch, batch) order (train_replay_to_record; with c->topk, relabel_topk_set). The
 * caller writes the header (train_replay_header_set). progress may be NULL; it is advanced by one
 * per batch. */
int relabel_run(Nn *nn, Model **t, int nt, const RelabelConf *c, const TrainData *d, TsWriter *w,
                DdProgress *progress);

/* INFER's static labels: eval-mode mean teacher logits of the n un-augmented images x [n,C,H,W]
 * into soft [n,K] (=), in chunks of at most 256 images. -1 with dd_err and *bad the first image
 * whose logits are not finite (the caller names its record). */
int relabel_static(Nn *nn, Model **t, int nt, const float *x, int64_t n, int C, int H, int W, float *soft,
                   int64_t *bad);

/* ---- top-k storage ----
 * Replaces a record's "logits" [n,K] by
 *   topv  F16 [n,k]   the k largest logits of each row, in decreasing order (ties: lower class first)
 *   topi  I16 [n,k]   their class indices (I32 when K > 32767)
 *   topr  F16 [n]     the mean of the row's other K-k logits
 * Reconstruction (relabel_topk_expand): logit[topi[i,j]] = topv[i,j], every other class = topr[i].
 * This is the logit-space form of FKD's top-k convention (the probability mass left over by the
 * kept classes spread uniformly over the others): at evaltrain's temperature (T = 20) softmax is
 * nearly linear in the logits, so keeping the dropped logits' mean keeps their total mass. */
void relabel_topk_set(TsRecord *rec, const float *logits, int n, int K, int k);

/* Rebuilds logits [n,K] (=) from rec's topv/topi/topr. Returns 1 when rec holds them, 0 when it
 * holds none of them (nothing written), -1 with dd_err when they are malformed (dtypes, shapes
 * [n,k] with 1 <= k <= K, indexes outside [0,K) or repeated in a row, non-finite values).
 * evaltrain reads it through train_replay_from_record when a record has no "logits". */
int relabel_topk_expand(const TsRecord *rec, int64_t n, int K, float *logits);

/* Stored bytes per image per epoch of the fields above, for K classes and batch B (the per-batch
 * lam and box shared by its images; container framing excluded). */
double relabel_payload_bytes(int K, int topk, int batch);

#endif

/* train.h - evaltrain's training and evaluation loop (ddpipe-method(7) sections 0 and 4): a model trained
 * on a record stream held in memory, with hard labels (cross-entropy), an online teacher (RDED),
 * static soft labels in the records (INFER) or relabel's replay stream (FKD / SRe2L / FADRM), and
 * evaluated for top-1 / top-5. Also the replay record layout relabel writes.
 *
 * Randomness: every draw is keyed through dd_rng by (seed, purpose, epoch, image or batch), so a
 * run's result depends neither on the thread count of the host-side code nor on being resumed
 * from a checkpoint: the "RNG position" of a checkpoint is just the number of finished epochs.
 *
 * Ownership: TrainData and TrainReplay own their arrays (train_data_free, train_replay_free).
 * Models, the Nn context and readers passed in are borrowed. Errors: -1 with dd_err set (one
 * line naming file, record, epoch and step where known); dd_errcode is DD_EXIT_DEVICE for device
 * failures, DD_EXIT_DATA otherwise.
 */
#ifndef DD_TRAIN_H
#define DD_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "formats/stream.h"
#include "libcommon/distill/augment.h"
#include "libcommon/models/model.h"
#include "libcommon/optim/optim.h"

/* dd_rng stream ids of evaltrain's per-epoch and per-batch draws (augment.h's AUG_STREAM_TRAIN
 * keys the per-image ones, index = epoch * 2^32 + image). Chosen clear of augment.h's enum. */
enum { TRAIN_STREAM_ORDER = 64, TRAIN_STREAM_BATCH = 65 };

/* ---- a data set in memory ---- */

/* An image kept at its own size (TrainData.img): C x h x w pixels at byte `off` of TrainData.pix,
 * U8 (value / 255, as ts_record_image_f32) or F32 as the record stored them. */
typedef struct {
    int64_t off;
    int h, w;
    int f32;
} TrainImage;

typedef struct {
    int64_t n;
    int C, H, W;        /* every image's size; with img, the training size res x res */
    int K;              /* classes (the stream header's) */
    float *x;           /* [n,C,H,W] pixels in [0,1]; NULL with img */
    TrainImage *img;    /* [n] images at their own sizes (TrainDataOpts.res), or NULL */
    uint8_t *pix;       /* their pixels */
    int64_t max_hw;     /* the largest h * w among img */
    int64_t *y;         /* [n] class indices */
    float *soft;        /* [n,K] static soft logits (field "soft"), or NULL */
    int64_t resized;    /* images resized and centre-cropped to TrainDataOpts.crop */
    int src_h, src_w;   /* the first such image's size as stored */
} TrainData;

typedef struct {
    /* 1: every record must carry "soft" [K] (F32/F16); -1: the same if the first record has it
     * (d->soft tells), else none may; 0: ignored */
    int want_soft;
    /* > 0: each image is resized (antialiased bilinear, shorter side to crop*256/224, as
     * torchvision's Resize(256)) and centre-cropped to crop x crop (the 224-px validation
     * transform); with crop_other, images already crop x crop are kept as they are */
    int crop, crop_other;
    /* > 0: images may differ in size and are kept at their own sizes and dtypes (d->img), for
     * training at res x res through a crop of each original (train_run); H = W = res */
    int res;
} TrainDataOpts;

/* Reads every record of `in` (image F32 or U8, label; "soft" per o->want_soft) into d. All images
 * must have one shape [C,H,W] after o->crop, unless o->res > 0: then only C must agree. Labels
 * must lie in [0, K). Errors name the file, record index and key. */
int train_data_read(TsInput *in, const TrainDataOpts *o, TrainData *d);
void train_data_free(TrainData *d);

/* ---- the relabel -> evaltrain replay stream (relabel's output, evaltrain --labels) ----
 * Header: the training stream's classes, and the key "relabel": {"images": N, "epochs": E,
 * "batch": B, "height": H, "width": W, "images_digest": "16 hex digits"}: N and HxW of the
 * training stream it was made for, and train_data_digest of its images and labels (streams
 * written before the digest existed lack it; then it is not checked).
 * One record per (epoch, batch): epochs 0..E-1 in order, each of ceil(N/B) batches 0.. in order
 * (every image once per epoch; n = B but in the last batch); key "e%06lld_b%06lld" (epoch, batch,
 * 0-based), meta {"epoch":e,"batch":b}. Fields, n = images in the batch:
 *   index   I64 [n]     record index of each image in the training stream, in batch order
 *   crops   F32 [n,4]   RandomResizedCrop of each source image as (top/H, left/W, h/H, w/W);
 *                       replayed as round(v * side), then resized to H x W
 *   flips   U8  [n]     1: flipped left-right after the crop
 *   perm    I64 [n]     CutMix partner of each batch position (a permutation of 0..n-1)
 *   lam     F32 []      the CutMix lambda drawn (informational; targets are the stored logits)
 *   box     I32 [4]     CutMix box y0, x0, y1, x1 in output pixels, half-open; empty = no CutMix:
 *                       the box of image i is replaced by that of image perm[i] (after crop+flip)
 *   logits  F16 [n,K]   raw teacher logits on the mixed batch (mean over teachers; F32 accepted);
 *                       or, without "logits", relabel's top-k form topv/topi/topr (relabel.h)
 * Temperature and loss are evaltrain's (-T). */
typedef struct {
    int64_t epoch, batch;
    int n, K;
    int64_t *index;      /* [n] */
    AugBox *crop;        /* [n], pixels of the H x W source */
    uint8_t *flip;       /* [n] */
    int64_t *perm;       /* [n] */
    float lam;
    int box[4];          /* y0, x0, y1, x1 */
    float *logits;       /* [n,K] */
} TrainReplay;

typedef struct {
    int64_t images, epochs;
    int batch, H, W;
    int has_digest;
    uint64_t digest;     /* train_data_digest of the images relabel read (when has_digest) */
} TrainReplayInfo;

/* A 64-bit digest (FNV-1a over 32-bit words) of d's pixels (as read: U8 / 255 and F32 alike;
 * with d->img each image's size too) and labels, in record order: equal for the same images
 * however they were stored. */
uint64_t train_data_digest(const TrainData *d);

/* Adds the "relabel" key to a header (relabel's writer). */
void train_replay_header_set(TsHeader *h, const TrainReplayInfo *info);
/* Reads and checks the "relabel" key: -1 with dd_err naming `what` when absent or malformed. */
int train_replay_header_get(const TsHeader *h, const char *what, TrainReplayInfo *info);
/* Fills rec (cleared first) from b: key, meta and the fields above (logits stored as F16). */
void train_replay_to_record(const TrainReplay *b, int H, int W, TsRecord *rec);
/* Parses rec into b (which it allocates) and checks it against info and K: field dtypes and
 * shapes, indexes in [0, images), boxes inside the image, perm a permutation. -1 with dd_err. */
int train_replay_from_record(const TsRecord *rec, const TrainReplayInfo *info, int K, TrainReplay *b);
void train_replay_free(TrainReplay *b);

/* ---- evaluation ---- */

typedef struct {
    int64_t n;
    double top1, top5, loss;   /* fractions in [0,1]; loss: mean cross-entropy */
} TrainEval;

/* Eval-mode inference (grad off) over d in batches of `batch`; top-5 is top-min(5,K). */
int train_eval(Nn *nn, Model *m, const TrainData *d, int batch, TrainEval *out);

/* ---- training ---- */

typedef enum { TRAIN_HARD = 0, TRAIN_TEACHER = 1, TRAIN_STATIC = 2, TRAIN_REPLAY = 3 } TrainLabelKind;

typedef struct {
    TrainLabelKind labels;
    OptimConf opt;             /* lr is the base lr of the cosine schedule */
    double eta;                /* cosine: lr_e = lr * 0.5 * (1 + cos(pi * e / (E * eta))) */
    int epochs, batch, micro;  /* micro: gradient-accumulation micro-batches per batch */
    int shuffle;
    uint64_t seed;
    float label_smoothing;     /* hard labels */
    float T;                   /* soft labels: KL temperature */
    /* augmentation (ignored by TRAIN_REPLAY, which replays its stream). On images kept at their
     * own sizes (TrainData.img) each is augmented at its size and brought to res x res: RRC's box
     * of the original is resized antialiased (as torchvision's RandomResizedCrop on a PIL image);
     * without RRC the image is first resized, shorter side to res, and centre-cropped (Resize +
     * CenterCrop). ShufflePatches acts on the original, RandomCrop and flip on the res x res. */
    int shuffle_patches;       /* RDED's ShufflePatches factor; <= 1 off */
    double rrc_lo, rrc_hi;     /* RandomResizedCrop scale; rrc_hi <= 0: off */
    int crop_pad;              /* RandomCrop padding (when RRC is off); 0 off */
    int flip;                  /* horizontal flip p = 0.5 */
    double cutmix;             /* CutMix Beta(a, a) parameter; 0 off */
    double mixup;              /* MixUp Beta(a, a) parameter; 0 off */
    /* evaluation and output */
    int eval_every;            /* evaluate every N epochs and after the last */
    int eval_batch;
    const char *checkpoint;    /* NULL: none; resumed from when the file exists */
    int checkpoint_every;
    int stop_after;            /* return after this epoch, checkpointed (a run in slices; 0 = off) */
    int threads;               /* host threads preparing batches of kept images (TrainData.img) */
    int quiet;
    FILE *metrics;             /* JSON lines, one per evaluated epoch, and the final line */
} TrainConf;

typedef struct {
    int epochs_done;
    double final_top1, final_top5, best_top1;
    int best_epoch;            /* 1-based; 0 when nothing was evaluated */
    double train_loss, train_acc;
    double seconds;
    int stopped;               /* 1: returned early by stop_after */
} TrainResult;

/* The run's recipe as a new JSON object, for its logs and its saved weights: labels, optimizer
 * (lr, momentum or betas, wd, which parameters decay), eta, epochs, batch, micro, seed, T (soft
 * labels) or label smoothing (hard), and "aug" (shuffle_patches, rrc [lo, hi] or null, crop_pad,
 * flip, cutmix, mixup; null for a replay, which replays its stream's). */
struct json_t;
struct json_t *train_recipe(const TrainConf *c);

/* Trains m (student, train-mode BN) for c->epochs epochs on tr; evaluates on val (may be NULL)
 * every eval_every epochs and at the end. teachers: NULL, or the online teachers (TRAIN_TEACHER)
 * as a NULL-terminated list, each in eval mode with grad off; the targets are the mean of their
 * logits (RDED's one teacher; INFER's val_dyn.py, several). replay: the opened --labels stream
 * (TRAIN_REPLAY), positioned after the header; its info checked by the caller. A non-finite loss stops with -1 naming the epoch and
 * step; the last checkpoint written stays. tr may hold images of their own sizes (TrainData.img),
 * except with replay; val may not. */
int train_run(Nn *nn, const TrainConf *c, Model *m, const TrainData *tr, const TrainData *val,
              Model *const *teachers, TsReader *replay, const TrainReplayInfo *rinfo, TrainResult *res);

#endif

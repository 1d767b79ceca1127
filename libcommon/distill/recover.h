/* recover.h - the SRe2L / SRe2L++ / FADRM / FADRM+ recover loop (ddpipe-method(7) section 2): synthetic
 * images optimised so that a frozen teacher classifies them as their class while the statistics
 * at the inputs of its BatchNorm layers match the running ones.
 *
 * A schedule is a list of stages over a global step counter [0, total): each stage runs steps
 * [start, end) at one image size with a fresh Adam (lr cosine over the GLOBAL counter, evaluated
 * at the start of each step), and between stages FADRM's ARC merge pulls the images back to their
 * initial patches. The fused run is rec_schedule_fused; one stage of it is rec_schedule_piece, and
 * running the pieces one after the other with arc_merge between them gives the same bits, because
 * every stage does the same float operations in the same order:
 *   start:  (resample x to the stage size when it differs; merge with P after a previous stage)
 *           xn = (x - mean[c]) / std[c]                              pixels -> normalized, float
 *   step t: lr_t = optim_recover_lr(lr, t, total); augmentation draw keyed by (seed, batch id, t);
 *           teacher t mod M; Adam on xn; clamp xn to [-m/s, (1-m)/s] per channel
 *   end:    x = clamp(xn * std[c] + mean[c], 0, 1)                   normalized -> pixels, float
 * The optimised variable lives in the teacher's normalized space, as in the reference (Adam's eps
 * makes pixel-space optimisation only approximately equivalent), and the teacher's network is fed
 * aug(xn) directly (its own normalization is the one that defines xn).
 *
 * Ownership: a RecBatch's x is malloc'd memory owned by the batch (rec_run may replace it when the
 * size changes; the caller frees it); labels, P and xn0 are borrowed. Teachers and the context are
 * borrowed. A RecSet (the recover filter's records, at the end) owns its records and arrays
 * (rec_set_free). Errors: -1 with dd_err (non-finite loss: DD_EXIT_DATA; no kernels for the device:
 * DD_EXIT_DEVICE).
 */
#ifndef DD_DISTILL_RECOVER_H
#define DD_DISTILL_RECOVER_H

#include <stdint.h>
#include <stdio.h>

#include "formats/stream.h"
#include "libcommon/models/model.h"

#define REC_MAX_STAGES 64
#define REC_MAX_TEACHERS 16   /* of a committee (RecConf.committee) */

typedef struct {
    int64_t start, end;          /* global steps [start, end) */
    int h, w;                    /* image size of the stage; 0 = the batch's size on entry */
} RecStage;

/* A step's augmentation, one draw for the whole batch (aug_recover_draw): RandomResizedCrop +
 * flip + roll (SRe2L, FADRM; INFER on 224-px data), the roll alone (INFER on CIFAR), or none. */
typedef enum { REC_AUG_NONE = 0, REC_AUG_FULL = 1, REC_AUG_ROLL = 2 } RecAug;

typedef struct {
    int64_t total;               /* budget of the cosine schedule */
    int nstages;
    RecStage stage[REC_MAX_STAGES];
    int merge;                   /* ARC merge before every stage but the first (needs P) */
    double alpha;                /* weight of x in the merge */
    double lr, r_bn, first_bn_mult;
    RecAug aug;                  /* the batch-shared augmentation of every step */
    int jitter;                  /* roll shifts in [0, jitter] */
    uint64_t seed;
    /* Several teachers: NULL, step t uses teacher t mod M alone (FADRM+'s round robin); else M
     * weights w_m >= 0 (CV-DD's committee): every step feeds one augmented view to all M and
     * descends sum_m w_m (CE_m + r_bn * BN_m). Borrowed; not with rec_ufc. */
    const double *committee;
    FILE *metrics;               /* JSON lines, or NULL */
    int64_t metrics_every;       /* a line every N steps of a stage (and at its last step) */
    DdProgress *progress;        /* advanced by one per step, or NULL */
    const char *input;           /* the images' name, first in a step's messages (NULL: none) */
} RecConf;

/* The reference's defaults (lr 0.25, r_bn 0.01, first-BN multiplier 10, alpha 0.5, REC_AUG_FULL,
 * jitter 4, metrics every step when a FILE is set) with an empty schedule. */
RecConf rec_conf_default(void);

/* FADRM's fused schedule: arc + 1 stages, stage s running steps [s*iters/(arc+1), (s+1)*iters/(arc+1))
 * (integer division), merges between them when arc > 0; sizes[s] (square) when sizes != NULL, else
 * the input size. Returns 0, or -1 with dd_err (arc + 1 > REC_MAX_STAGES or > iters). */
int rec_schedule_fused(RecConf *c, int64_t iters, int arc, const int *sizes);
/* One piece [start, end) of a `total`-step budget at the input size, no merge. 0 or -1 (bad range). */
int rec_schedule_piece(RecConf *c, int64_t start, int64_t end, int64_t total);

typedef struct {
    int n, C, H, W;              /* images and their current shape */
    float *x;                    /* [n,C,H,W] pixels in [0,1]; in: the start (unless xn0), out: the result */
    const float *xn0;            /* or NULL: first stage starts from these normalized values [n,C,H,W] */
    const int64_t *labels;       /* [n] hard labels */
    const float *const *P;       /* [n] initial patches [C,PH,PW] in pixels, for merges (else NULL) */
    int PH, PW;
    int64_t id;                  /* the batch's id (rec_plan): keys its augmentation draws with the step */
} RecBatch;

/* Runs every stage of c on the batch with teachers[0..M) (round robin by global step, or all at
 * every step with c->committee's weights; all share teachers[0]'s mean/std, checked). Output:
 * b->x, b->H, b->W. */
int rec_run(Nn *nn, Model **teachers, int M, const RecConf *c, RecBatch *b);

/* INFER's universal feature compensators (ddpipe-method(7) section 5): at most REC_UFC_MAX teachers. */
#define REC_UFC_MAX 16

/* The compensator u of batch b (b->x: its images in pixels, [n,C,H,W]) for teacher t, the m-th
 * (0 <= m < REC_UFC_MAX) of the run's: u [C,H,W] in t's normalized space, zero at the start,
 * optimised by Adam (betas 0.5, 0.9; lr cosine over c->total from c->lr) over the steps of
 * c->stage[0] (one stage at the input size, no merges) with rec_loss on aug(xn_i + u) for every
 * image i of the batch at once (xn_i = (x_i - mean) / std). u itself is not clamped (the reference
 * clamps only the images it makes: rec_ufc_apply). A step's augmentation draw is keyed by (seed,
 * batch id, m, step), so the M compensators of a batch see different draws. Metrics lines carry
 * "batch" and "ufc" (= m) instead of "stage". Output: u (host, C*H*W floats). 0, or -1 with
 * dd_err (a non-finite loss: DD_EXIT_DATA; c->committee set). */
int rec_ufc(Nn *nn, Model *t, int m, const RecConf *c, const RecBatch *b, float *u);
/* The images a compensator makes: out_i = clamp((x_i - mean) / std + u) * std + mean, 0, 1) for
 * n images x [n,C,hw] (pixels), float, in the order rec_to_norm then rec_to_pix compute. */
void rec_ufc_apply(const float *x, const float *u, float *out, int64_t n, int C, int64_t hw, const float *mean,
                   const float *std);

/* The loss of one step on a batch xa (normalized, [N,C,H,W] var; consumed, as by Model's net)
 * for a teacher in eval mode:
 * CE(net(xa), labels) + r_bn * sum_l m_l * BN distance_l, m_0 = first_bn_mult, the others 1.
 * Sets *ce and *bn (the unscaled weighted sum; 0 without BN layers) to the values. Exposed for tests. */
NnVar *rec_loss(Nn *nn, Model *t, NnVar *xa, const Tensor *labels, double r_bn, double first_bn_mult,
                float *ce, float *bn);

/* The batches of a set of n images with labels[0..n) in [0, ncls): an image's ipc index is its
 * rank among its class's images in input order; batch after batch, ipc index 0 first, each holds
 * the images of that ipc index of up to B consecutive classes (classes without one are skipped).
 * *order (n record indices, batch by batch, classes ascending) and *start (nbatch + 1 offsets into
 * order) are malloc'd for the caller, and so is *id (nbatch ids) unless id is NULL.
 *
 * A batch's id is intrinsic to its content, not its position in the plan:
 *     id = ipc * ceil(ncls / B) + first / B
 * with ipc its ipc index and first its lowest class. ids are distinct within a plan (the first
 * classes of successive batches of one ipc index are at least B apart), and a batch gets the same
 * id whichever other classes are present, so a class slice of the input whose classes fill whole
 * batches of B aligned on multiples of B (tscat --classes with B = the slice's class count) plans
 * its batches with the ids, and hence the augmentation draws, they have in the whole input.
 * Returns nbatch. */
int64_t rec_plan(const int64_t *labels, int64_t n, int ncls, int B, int64_t **order, int64_t **start,
                 int64_t **id);

/* SRe2L's start: xn[0..len) (=) N(0,1) noise in normalized space for image i of class cls, drawn
 * from (seed, AUG_STREAM_INIT, cls << 32 | i). */
void rec_noise(uint64_t seed, int cls, int i, float *xn, size_t len);

/* pixels -> normalized (x - mean[c]) / std[c] and back (clamped to [0,1]), float, [n,C,HW]. */
void rec_to_norm(const float *x, float *xn, int64_t n, int C, int64_t hw, const float *mean, const float *std);
void rec_to_pix(const float *xn, float *x, int64_t n, int C, int64_t hw, const float *mean, const float *std);

/* ---- over a stream's records (the recover filter) ---- */

/* The records of a run in input order, the images they start from and their batches. */
typedef struct {
    TsRecord *recs;              /* [n]: key, "label", and "image" F32 [C,H,W] unless xn0 */
    int64_t n;
    int C, H, W;
    float *xn0;                  /* --init noise: [n,C,H,W] normalized starts; else NULL */
    TsRecord *urecs;             /* --ufc: [M*n] the compensated copies (rec_set_ufc); else NULL */
    int M;                       /* teachers of urecs */
    int B;                       /* batch size (classes per batch) of the plan */
    int64_t nbatch, *lab, *order, *start, *bid;  /* rec_set_plan: labels [n] and rec_plan's arrays */
} RecSet;

/* Reads every record of `in` into s (overwritten): each needs a label in the header's class list
 * and an image [C,H,W] (the first record's shape fixes s->C, H, W), kept as F32. 0, or -1 with
 * dd_err ("FILE: record I (KEY): ...", "FILE: no records" or the reader's message) and s freed. */
int rec_set_read(TsInput *in, RecSet *s);
/* SRe2L's start for teacher m's classes (file `wname`, for messages): s (overwritten) gets ipc
 * records c%04d_i%04d per class (class-major) with a "label" and no image, and xn0 [n,C,side,side]
 * (C = m's input channels) of rec_noise(seed, class, i); *h a new header with m's class names.
 * 0, or -1 with dd_err (the weights' metadata holds no class list). */
int rec_set_noise(RecSet *s, const Model *m, const char *wname, int ipc, int side, uint64_t seed, TsHeader **h);
/* --ufc's output records after the n inputs: per teacher k (0 <= k < M), KEY_u<k+1> with meta
 * {"ufc":k+1,"of":"KEY"} (image and label come from rec_set_run), in input order, as s->urecs.
 * Checks every key of the output, before any work: valid, and unique across it. 0, or -1 with
 * dd_err (what was made stays in s for rec_set_free). */
int rec_set_ufc(RecSet *s, int M);
/* The batches of the records (rec_plan over their labels, ncls classes, B per batch); returns
 * s->nbatch. */
int64_t rec_set_plan(RecSet *s, int ncls, int B);
/* Runs every batch of the plan (rec_set_plan first) in order, each made of its records' images
 * (or xn0 rows) with P = the records' images, the progress and metrics of c advancing. Without
 * urecs: rec_run with teachers t[0..M), each record's image replaced by its result; with urecs
 * (rec_set_ufc with the same M): per teacher k a compensator (rec_ufc) and the batch's compensated
 * images (rec_ufc_apply) set with the labels on urecs[k * n + record]. 0, or -1 with dd_err at
 * the first failing batch (dd_errcode: rec_run's or rec_ufc's class). */
int rec_set_run(Nn *nn, Model **t, int M, const RecConf *c, RecSet *s);
/* Frees what s holds (s may be zeroed or partly filled). */
void rec_set_free(RecSet *s);

#endif

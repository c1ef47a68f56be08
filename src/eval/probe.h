/* probe.h: what the probing programs (cae-cl-linear, cae-cl-attentive) share.
 *
 * A probe is a frozen encoder (src/eval/encoder_eval.h) whose output feeds a small
 * trainable head. Everything around the head is the same for every probe and
 * lives here:
 *   probe_data.c   the training augmentation, features of a whole split or
 *                  of an augmented batch through the encoder
 *   probe_eval.c   top-1 / top-5 / loss over logits
 *   probe_io.c     output folder, log.txt and metrics.jsonl lines, the head's
 *                  safetensors checkpoint (a list of named host tensors)
 *   probe_run.c    setup (datasets, device, encoder) and the epoch loop
 *                  (shuffle, cached or augmented features, schedule, evaluate,
 *                  log, checkpoint, best accuracy, --eval, --resume)
 * The program supplies the head as a cae_probe_head: a few callbacks over its
 * own state.
 */
#ifndef CAE_PROBE_H
#define CAE_PROBE_H

#include "train/args.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/loader_cls.h"
#include "data/rng.h"
#include "eval/encoder_eval.h"
#include "train/schedule.h"

#include <stdint.h>
#include <stdio.h>

/* ---- probe_data.c ---- */
/* The probes' training augmentation (RandomResizedCrop scale [0.08, 1],
 * bicubic, horizontal flip, no colour jitter), checked. */
int cae_probe_train_augment(cae_augment_cfg *aug, int input_size, int imagenet_mean_std);

/* ---- probe_eval.c ---- */
typedef struct {
    double loss_sum;
    size_t c1, c5, n;
} cae_probe_counts;

typedef struct {
    double loss, acc1, acc5; /* mean cross-entropy, top-1 and top-5 in percent */
    size_t n;
} cae_probe_result;

/* Adds m rows of logits [m, K] against their labels. */
void cae_probe_count(cae_probe_counts *c, const float *logits, const int32_t *labels, size_t m,
                     size_t K);
void cae_probe_result_of(const cae_probe_counts *c, cae_probe_result *r);

/* ---- the head, supplied by the program ----
 * Under several ranks a head averages its gradients with
 * cae_probe_mean (below) before its optimizer step, and its sync callback
 * copies rank 0's BatchNorm running statistics to every rank. */
typedef struct {
    int next_epoch;  /* the epoch a resumed run starts with */
    double best;     /* best top-1 so far, -1 if none */
    int best_epoch;
} cae_probe_state;

typedef struct {
    const char *name;     /* checkpoints are <output_dir>/checkpoint-<name>.safetensors */
    size_t n_parameters;  /* trainable, for log.txt */
    int can_resume;       /* the checkpoint holds the optimizer state too */
    /* One training step on features [B, F] and labels [B] at learning rate
     * lr; *loss: the batch's mean loss. */
    int (*step)(void *head, const float *feat, const int32_t *labels, double lr, double *loss);
    /* Evaluation-mode logits [m, K] of m <= B features [m, F]. */
    int (*logits)(void *head, const float *feat, size_t m, float *logits);
    int (*save)(void *head, const char *path, const cae_probe_state *st);
    /* Loads what save wrote; st gets the saved progress. */
    int (*load)(void *head, const char *path, cae_probe_state *st);
    int (*sync)(void *head);
} cae_probe_head;

/* ---- multi-rank runs ----
 * A program started under mpirun fills these from mpi/ (probe_ranks.c);
 * world 1 (all zero) is a plain single-device run. Every rank holds the
 * same parameters (same initialization, averaged gradients, deterministic
 * optimizer on the host); rank r trains on slice [r*B, (r+1)*B) of every
 * global batch of B * world images (drop_last), so the ranks together see
 * exactly the batches one rank with batch B * world would. BatchNorm uses the rank's own batch statistics, as the
 * official DistributedDataParallel runs without SyncBatchNorm, and every
 * rank takes rank 0's running statistics (DDP's broadcast_buffers) before
 * evaluating. Rank 0 alone prints, logs and writes checkpoints. */
typedef struct {
    int rank, world;
    void *user;
    int (*mean_f32)(void *user, float *v, size_t n); /* average over ranks, in place */
    int (*sum_f64)(void *user, double *v, int n);    /* sum over ranks, in place */
    int (*bcast_f32)(void *user, float *v, size_t n); /* rank 0's values everywhere */
} cae_probe_ranks;

/* ---- probe_run.c ---- */
typedef struct {
    cae_args a;
    cae_ctx ctx;
    int have_ctx;
    cae_dataset *train, *val;
    cae_encoder_eval enc;
    int have_enc;
    cae_pool pool;          /* what the encoder hands the head */
    size_t B, D, K, S;      /* batch, encoder width, classes, input size */
    size_t F;               /* floats of one image's feature: D, or tokens * D */
    cae_schedule sched;     /* base and final set by the program before cae_probe_run */
    cae_augment_cfg aug;
    cae_cls_loader *loader; /* images through the transforms (data/loader_cls.h) */
    size_t *batch_idx;      /* [B] one batch's data set indices and seeds */
    uint64_t *batch_seeds;
    float *val_feat, *train_feat; /* [n, F]; train_feat only with --cache_features */
    int32_t *val_labels, *train_labels;
    float *images, *feat, *logits; /* one batch */
    int32_t *labels;
    FILE *log, *metrics;
    cae_probe_ranks ranks;
} cae_probe;

/* Checks the common flags, opens the splits, the device, the output folder
 * and the logs, builds and loads the encoder; features will be `pool`. */
int cae_probe_setup(cae_probe *p, cae_pool pool);
/* v averaged / rank 0's v on every rank (no-ops on one rank). */
int cae_probe_mean(const cae_probe *p, float *v, size_t n);
int cae_probe_bcast(const cae_probe *p, float *v, size_t n);
/* Training steps per epoch (drop_last, global batch B * world). */
size_t cae_probe_steps_per_epoch(const cae_probe *p);
/* --eval: evaluates the head of --resume; else trains (resuming from
 * --resume when given) and evaluates every epoch. */
int cae_probe_run(cae_probe *p, const cae_probe_head *head, void *state);
void cae_probe_teardown(cae_probe *p);

/* ---- probe_data.c, over a set-up probe ---- */
/* Features [n, F] and labels of every image of ds (evaluation transform), in
 * order, batch by batch through the encoder; with shard, only the batches
 * s with (s / B) % world == rank (the others are left as they are). */
int cae_probe_extract(cae_probe *p, const cae_dataset *ds, int shard, float *feat,
                      int32_t *labels);
/* Features [B, F] and labels of this rank's slice idx[rank * B ..] of the
 * global batch idx[0 .. B * world), each image augmented from its draw of r
 * (one draw per image of the global batch, so a slice sees the seeds one
 * rank with the whole batch would). */
int cae_probe_augmented(cae_probe *p, const size_t *idx, cae_rng *r, float *feat,
                        int32_t *labels);

/* ---- probe_io.c ---- */
/* One named host tensor of a head checkpoint. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    float *data;
} cae_probe_tensor;

/* Writes the tensors, the metadata pairs (meta[2i] = key, meta[2i+1] =
 * value; n_meta pairs) and st (epoch, best, best_epoch) atomically. */
int cae_probe_save(const char *path, const cae_probe_tensor *t, size_t n, const char *const *meta,
                   size_t n_meta, const cae_probe_state *st);
/* Reads every tensor (each must exist with its shape) into its data, and st
 * (when non-NULL; a file without progress gives next_epoch 0, best -1). */
int cae_probe_load(const char *path, const cae_probe_tensor *t, size_t n, cae_probe_state *st);

#endif

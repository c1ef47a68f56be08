/* loader.h: batches for training, produced ahead of the device by a pool
 * of worker threads into a ring of ready batches.
 *
 * Sampling follows torch's DistributedSampler with drop_last: each epoch
 * is a permutation of the data set drawn from (seed, epoch); rank r of W
 * takes positions r, r+W, r+2W, ... of it; steps per epoch =
 * floor(len / (batch_size * W)). Sample k of the epoch (its position in the
 * permutation) is augmented and masked from a seed that is a pure function
 * of (seed, epoch, k), so the data does not depend on the number of workers
 * and a resumed run sees the same batches. An image that cannot be decoded
 * is replaced by the next position of the permutation that can (counted in
 * the batch's skipped field). */
#ifndef CAE_LOADER_H
#define CAE_LOADER_H

#include "data/augment.h"
#include "data/dataset.h"
#include "data/masking.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t batch;           /* B */
    float *samples;         /* [B,3,S,S] normalized model views */
    float *tok_view;        /* [B,3,S2,S2] tokenizer views, or NULL */
    unsigned char *mask;    /* [B, G*G] */
    uint64_t epoch, step;   /* step within the epoch */
    size_t skipped;         /* unusable images replaced in this batch */
    double wait_ms;         /* how long cae_loader_next waited for it */
} cae_batch;

typedef struct {
    const cae_dataset *ds;
    cae_augment_cfg aug;
    cae_mask_cfg mask;
    size_t batch_size;
    int num_workers; /* threads; 0 = decode in the caller's thread */
    uint64_t seed;
    int rank, world_size;
    int ring; /* batches prepared ahead (>= 1) */
} cae_loader_cfg;

typedef struct cae_loader cae_loader;

int cae_loader_new(cae_loader **out, const cae_loader_cfg *cfg);
void cae_loader_free(cae_loader *l); /* stops and joins the workers */
size_t cae_loader_steps_per_epoch(const cae_loader *l);
/* Start producing the batches of epoch from step first_step on. */
int cae_loader_start(cae_loader *l, uint64_t epoch, uint64_t first_step);
/* The next batch in order: 0; 1 when the epoch is done; -1 on a fatal
 * error (reported). The batch stays valid until released. */
int cae_loader_next(cae_loader *l, cae_batch **out);
void cae_loader_release(cae_loader *l, cae_batch *b);

/* The index of the data set that position k of epoch's permutation holds
 * for this rank's step/slot (exposed for tests and the evaluation tools). */
size_t cae_sampler_index(uint64_t seed, uint64_t epoch, size_t len, size_t position);
/* The per-sample seed of position k of an epoch. */
uint64_t cae_sample_seed(uint64_t seed, uint64_t epoch, size_t position);

#endif

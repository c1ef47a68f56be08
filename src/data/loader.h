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
    size_t *index;          /* [B] data set index of each sample (after replacement) */
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
    int ring; /* batches prepared ahead (>= 1), besides the one the caller holds */
} cae_loader_cfg;

typedef struct cae_loader cae_loader;

/* Checks cfg (cae_augment_check, cae_mask_check, a data set of at least
 * one global batch) and starts num_workers threads, which block every
 * signal so that SIGINT/SIGTERM reach the caller's threads. A replaced
 * sample keeps its position's seed: only the image changes. */
int cae_loader_new(cae_loader **out, const cae_loader_cfg *cfg);
void cae_loader_free(cae_loader *l); /* stops and joins the workers */
size_t cae_loader_steps_per_epoch(const cae_loader *l);
/* Start producing the batches of epoch from step first_step on. */
int cae_loader_start(cae_loader *l, uint64_t epoch, uint64_t first_step);
/* The next batch in order: 0; 1 when the epoch is done; -1 on a fatal
 * error (reported). The batch stays valid until released; the ring has
 * ring + 1 batches, so holding one still leaves ring being prepared, and
 * holding all of them is refused. */
int cae_loader_next(cae_loader *l, cae_batch **out);
void cae_loader_release(cae_loader *l, cae_batch *b);

/* The index of the data set that position k of epoch's permutation holds
 * for this rank's step/slot (exposed for tests and the evaluation tools).
 * Rank r's sample j of step s is at position r + (s*B + j)*W. This draws
 * the whole permutation (O(len) time and memory); SIZE_MAX (reported) when
 * out of memory or position >= len. */
size_t cae_sampler_index(uint64_t seed, uint64_t epoch, size_t len, size_t position);
/* The whole permutation of an epoch: perm[len] (Fisher-Yates driven by
 * splitmix64 seeded from (seed, epoch)). */
void cae_sampler_permutation(uint64_t seed, uint64_t epoch, size_t len, size_t *perm);
/* The per-sample seed of position k of an epoch. */
uint64_t cae_sample_seed(uint64_t seed, uint64_t epoch, size_t position);

#endif

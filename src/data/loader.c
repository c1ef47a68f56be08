/* loader.c: the sampler and the pool of loader threads. Owns the ring of
 * batch buffers, the workers (each with its own decoder, augmentation
 * scratch and image) and the epoch's permutation.
 *
 * The unit of work is one sample: workers claim the next unclaimed sample
 * of the earliest batch being filled, so every worker helps with the batch
 * the trainer needs next, even with a ring of one. A batch is ready when
 * all its samples are done, and batches are handed out strictly in step
 * order. Every sample's content depends only on (seed, epoch, position), so
 * which thread made it, and when, does not show in the data.
 *
 * Ring slots go FREE -> FILLING (given the next step) -> READY -> HELD (by
 * the caller) -> FREE (cae_loader_release). One mutex guards the slots'
 * states and counters; the sample data is written outside it, each sample
 * by the one worker that claimed it. cae_loader_start waits until no sample
 * is in progress before it reuses the ring. */
#include "data/loader.h"
#include "runtime/errors.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAE_LOADER_MAX_TRIES 64 /* unusable images in a row before giving up */
#define CAE_LOADER_MAX_WORKERS 1024
#define CAE_LOADER_MAX_RING 1024

/* pthread calls return an error number rather than setting errno */
#define PT_CHECK(call)                                                                  \
    do {                                                                                \
        int pt_check_err_ = (call);                                                     \
        if (pt_check_err_ != 0)                                                         \
            cae_errorf("%s failed: %s (%s:%d)", #call, strerror(pt_check_err_), __FILE__, \
                       __LINE__);                                                       \
    } while (0)

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct {
    cae_batch b; /* first member: a handed-out cae_batch * is its slot */
    int state;
    size_t claimed, done; /* samples taken by workers / finished */
} ring_slot;

typedef struct {
    cae_loader *l;
    cae_decoder *dec;
    cae_augment_scratch *scratch;
    cae_image img;
    pthread_t thread;
    int running;
} worker;

struct cae_loader {
    cae_loader_cfg cfg;
    size_t len, steps;
    size_t view_floats, view2_floats, mask_bytes; /* per sample */
    size_t *perm;                                 /* [len] this epoch's permutation */
    uint64_t perm_epoch;
    int perm_valid;
    ring_slot *slots;
    int nslots;
    worker *workers; /* num_workers threads, or one used by the caller */
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* a sample can be claimed, or stop */
    pthread_cond_t ready_cv; /* a batch is ready, or a worker failed */
    pthread_cond_t idle_cv;  /* no sample in progress */
    int sync_ok;             /* mu and the condition variables exist */
    uint64_t epoch, next_assign, next_deliver;
    size_t busy; /* samples being produced right now */
    int started, paused, stopping, failed;
};

/* ---- seeds and the permutation ---------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A well-mixed function of two words. */
static uint64_t hash2(uint64_t a, uint64_t b)
{
    uint64_t s = a;
    s = splitmix64(&s) ^ b;
    return splitmix64(&s);
}

/* domain constants keep the permutation, sample and mask streams apart */
#define PERM_DOMAIN 0x7065726d75746521ull
#define SAMPLE_DOMAIN 0x73616d706c657321ull
#define MASK_DOMAIN 0x6d61736b73656564ull

uint64_t cae_sample_seed(uint64_t seed, uint64_t epoch, size_t position)
{
    return hash2(hash2(seed ^ SAMPLE_DOMAIN, epoch), (uint64_t)position);
}

/* Uniform in [0, n) without modulo bias. */
static uint64_t bounded(uint64_t *state, uint64_t n)
{
    uint64_t threshold = (0 - n) % n, r;
    do
        r = splitmix64(state);
    while (r < threshold);
    return r % n;
}

void cae_sampler_permutation(uint64_t seed, uint64_t epoch, size_t len, size_t *perm)
{
    uint64_t state = hash2(seed ^ PERM_DOMAIN, epoch);

    for (size_t i = 0; i < len; i++)
        perm[i] = i;
    for (size_t i = len; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)bounded(&state, i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

size_t cae_sampler_index(uint64_t seed, uint64_t epoch, size_t len, size_t position)
{
    size_t *perm, idx;

    if (position >= len) {
        cae_errorf("cae_sampler_index: position %zu of a data set of %zu", position, len);
        return SIZE_MAX;
    }
    perm = malloc(len * sizeof *perm);
    if (perm == NULL) {
        cae_errorf("cae_sampler_index: out of memory for a permutation of %zu", len);
        return SIZE_MAX;
    }
    cae_sampler_permutation(seed, epoch, len, perm);
    idx = perm[position];
    free(perm);
    return idx;
}

/* ---- producing one sample ---------------------------------------------------- */

/* Sample j of step's batch into slot s: the image at its permutation
 * position (or the next usable one), augmented and masked. Runs without
 * the lock: reads only what cae_loader_start leaves alone while busy > 0. */
static int produce(cae_loader *l, worker *w, ring_slot *s, size_t j, uint64_t epoch,
                   uint64_t step, size_t *skipped)
{
    const cae_loader_cfg *c = &l->cfg;
    size_t k = (size_t)c->rank + ((size_t)step * c->batch_size + j) * (size_t)c->world_size;
    uint64_t seed = cae_sample_seed(c->seed, epoch, k);
    size_t idx = 0, t;
    int rc = 1;

    for (t = 0; t < CAE_LOADER_MAX_TRIES && t < l->len && rc > 0; t++) {
        idx = l->perm[(k + t) % l->len];
        rc = cae_dataset_get(c->ds, idx, w->dec, &w->img);
        if (rc > 0)
            (*skipped)++;
    }
    if (rc < 0)
        return -1;
    if (rc > 0) {
        cae_errorf("%s: %zu unusable images in a row (epoch %llu, step %llu); giving up",
                   cae_dataset_describe(c->ds), t, (unsigned long long)epoch,
                   (unsigned long long)step);
        return -1;
    }
    if (cae_augment(&c->aug, &w->img, seed, w->scratch, s->b.samples + j * l->view_floats,
                    s->b.tok_view != NULL ? s->b.tok_view + j * l->view2_floats : NULL) != 0)
        return -1;
    cae_mask_generate(&c->mask, hash2(seed, MASK_DOMAIN), s->b.mask + j * l->mask_bytes);
    s->b.index[j] = idx;
    return 0;
}

/* The FILLING slot with the smallest step that still has unclaimed samples. */
static ring_slot *find_claim(cae_loader *l)
{
    ring_slot *best = NULL;

    if (l->paused || l->stopping || l->failed)
        return NULL;
    for (int i = 0; i < l->nslots; i++) {
        ring_slot *s = &l->slots[i];
        if (s->state == SLOT_FILLING && s->claimed < l->cfg.batch_size &&
            (best == NULL || s->b.step < best->b.step))
            best = s;
    }
    return best;
}

/* Claim the next sample of s and produce it. Called and returns with the
 * lock held; drops it while working. */
static void run_one(cae_loader *l, worker *w, ring_slot *s)
{
    size_t j = s->claimed++, skipped = 0;
    uint64_t step = s->b.step, epoch = l->epoch;
    int rc;

    l->busy++;
    PT_CHECK(pthread_mutex_unlock(&l->mu));
    rc = produce(l, w, s, j, epoch, step, &skipped);
    PT_CHECK(pthread_mutex_lock(&l->mu));
    l->busy--;
    if (rc != 0) {
        l->failed = 1;
        PT_CHECK(pthread_cond_broadcast(&l->ready_cv));
    } else {
        s->b.skipped += skipped;
        if (++s->done == l->cfg.batch_size) {
            s->state = SLOT_READY;
            PT_CHECK(pthread_cond_broadcast(&l->ready_cv));
        }
    }
    if (l->busy == 0)
        PT_CHECK(pthread_cond_broadcast(&l->idle_cv));
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    cae_loader *l = w->l;
    ring_slot *s = NULL;

    PT_CHECK(pthread_mutex_lock(&l->mu));
    for (;;) {
        while (!l->stopping && (s = find_claim(l)) == NULL)
            PT_CHECK(pthread_cond_wait(&l->work_cv, &l->mu));
        if (l->stopping)
            break;
        run_one(l, w, s);
    }
    PT_CHECK(pthread_mutex_unlock(&l->mu));
    return NULL;
}

/* Give the next steps to free slots (lock held). */
static void assign_free(cae_loader *l)
{
    for (int i = 0; i < l->nslots && l->next_assign < l->steps; i++) {
        ring_slot *s = &l->slots[i];
        if (s->state != SLOT_FREE)
            continue;
        s->state = SLOT_FILLING;
        s->b.epoch = l->epoch;
        s->b.step = l->next_assign++;
        s->b.skipped = 0;
        s->b.wait_ms = 0;
        s->claimed = s->done = 0;
    }
}

/* ---- set-up and tear-down ------------------------------------------------------ */

static int check_cfg(const cae_loader_cfg *c)
{
    if (c->ds == NULL) {
        cae_errorf("cae_loader_new: no data set");
        return -1;
    }
    if (c->batch_size < 1 || c->batch_size > (1u << 24)) {
        cae_errorf("--batch_size %zu: must be 1 .. %u", c->batch_size, 1u << 24);
        return -1;
    }
    if (c->world_size < 1 || c->rank < 0 || c->rank >= c->world_size) {
        cae_errorf("cae_loader_new: rank %d of world size %d", c->rank, c->world_size);
        return -1;
    }
    if (c->num_workers < 0 || c->num_workers > CAE_LOADER_MAX_WORKERS) {
        cae_errorf("--num_workers %d: must be 0 .. %d", c->num_workers, CAE_LOADER_MAX_WORKERS);
        return -1;
    }
    if (c->ring < 1 || c->ring > CAE_LOADER_MAX_RING) {
        cae_errorf("cae_loader_new: ring of %d batches (1 .. %d)", c->ring, CAE_LOADER_MAX_RING);
        return -1;
    }
    if (cae_augment_check(&c->aug) != 0)
        return -1;
    return cae_mask_check(&c->mask) != 0 ? -1 : 0;
}

/* calloc of n * size with the product checked. */
static void *alloc_array(size_t n, size_t size, const char *what)
{
    void *p = NULL;

    if (size != 0 && n <= SIZE_MAX / size)
        p = calloc(n > 0 ? n : 1, size);
    if (p == NULL)
        cae_errorf("cae_loader_new: out of memory for %s (%zu x %zu bytes)", what, n, size);
    return p;
}

static int worker_init(worker *w, cae_loader *l)
{
    w->l = l;
    w->dec = cae_decoder_new();
    if (w->dec == NULL)
        return -1;
    w->scratch = cae_augment_scratch_new(); /* reports its own failure */
    return w->scratch != NULL ? 0 : -1;
}

static int start_threads(cae_loader *l)
{
    sigset_t all, old;
    int rc = 0, e;

    /* workers inherit a full signal mask: SIGINT/SIGTERM reach the trainer's thread */
    if (sigfillset(&all) != 0) {
        cae_errorf("sigfillset: %s", strerror(errno));
        return -1;
    }
    e = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (e != 0) {
        cae_errorf("pthread_sigmask: %s", strerror(e));
        return -1;
    }
    for (int i = 0; i < l->cfg.num_workers; i++) {
        e = pthread_create(&l->workers[i].thread, NULL, worker_main, &l->workers[i]);
        if (e != 0) {
            cae_errorf("pthread_create (loader thread %d of %d): %s", i + 1, l->cfg.num_workers,
                       strerror(e));
            rc = -1;
            break;
        }
        l->workers[i].running = 1;
    }
    PT_CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL));
    return rc;
}

int cae_loader_new(cae_loader **out, const cae_loader_cfg *cfg)
{
    cae_loader *l;
    size_t s, s2, g, per_step;
    int e;

    *out = NULL;
    if (cfg == NULL || check_cfg(cfg) != 0)
        return -1;
    per_step = cfg->batch_size * (size_t)cfg->world_size;
    if (cae_dataset_len(cfg->ds) < per_step) {
        cae_errorf("--batch_size %zu x %d ranks = %zu images per step, more than the %s",
                   cfg->batch_size, cfg->world_size, per_step, cae_dataset_describe(cfg->ds));
        return -1;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        cae_errorf("cae_loader_new: out of memory");
        return -1;
    }
    l->cfg = *cfg;
    l->len = cae_dataset_len(cfg->ds);
    l->steps = l->len / per_step;
    s = (size_t)cfg->aug.input_size;
    s2 = (size_t)cfg->aug.second_input_size;
    g = (size_t)cfg->mask.grid;
    l->view_floats = 3 * s * s;
    l->view2_floats = 3 * s2 * s2;
    l->mask_bytes = g * g;
    l->nslots = cfg->ring + 1; /* the one the caller holds, and ring ahead of it */
    l->nworkers = cfg->num_workers > 0 ? cfg->num_workers : 1;
    if ((e = pthread_mutex_init(&l->mu, NULL)) != 0 ||
        (e = pthread_cond_init(&l->work_cv, NULL)) != 0 ||
        (e = pthread_cond_init(&l->ready_cv, NULL)) != 0 ||
        (e = pthread_cond_init(&l->idle_cv, NULL)) != 0) {
        cae_errorf("cae_loader_new: mutex/condition variable: %s", strerror(e));
        free(l); /* whatever did get initialised holds no resources on Linux */
        return -1;
    }
    l->sync_ok = 1;
    l->perm = alloc_array(l->len, sizeof *l->perm, "the permutation");
    l->slots = alloc_array((size_t)l->nslots, sizeof *l->slots, "the ring");
    l->workers = alloc_array((size_t)l->nworkers, sizeof *l->workers, "the workers");
    if (l->perm == NULL || l->slots == NULL || l->workers == NULL)
        goto fail;
    for (int i = 0; i < l->nslots; i++) {
        cae_batch *b = &l->slots[i].b;
        b->batch = cfg->batch_size;
        b->samples = alloc_array(cfg->batch_size, l->view_floats * sizeof(float), "samples");
        b->mask = alloc_array(cfg->batch_size, l->mask_bytes, "masks");
        b->index = alloc_array(cfg->batch_size, sizeof(size_t), "indices");
        if (b->samples == NULL || b->mask == NULL || b->index == NULL)
            goto fail;
        if (s2 > 0 && (b->tok_view = alloc_array(cfg->batch_size, l->view2_floats * sizeof(float),
                                                 "tokenizer views")) == NULL)
            goto fail;
    }
    for (int i = 0; i < l->nworkers; i++)
        if (worker_init(&l->workers[i], l) != 0)
            goto fail;
    if (start_threads(l) != 0)
        goto fail;
    *out = l;
    return 0;
fail:
    cae_loader_free(l);
    return -1;
}

void cae_loader_free(cae_loader *l)
{
    if (l == NULL)
        return;
    if (l->sync_ok) {
        PT_CHECK(pthread_mutex_lock(&l->mu));
        l->stopping = 1;
        PT_CHECK(pthread_cond_broadcast(&l->work_cv));
        PT_CHECK(pthread_mutex_unlock(&l->mu));
    }
    for (int i = 0; l->workers != NULL && i < l->nworkers; i++) {
        worker *w = &l->workers[i];
        if (w->running)
            PT_CHECK(pthread_join(w->thread, NULL));
        cae_decoder_free(w->dec);
        cae_augment_scratch_free(w->scratch);
        cae_image_free(&w->img);
    }
    for (int i = 0; l->slots != NULL && i < l->nslots; i++) {
        free(l->slots[i].b.samples);
        free(l->slots[i].b.tok_view);
        free(l->slots[i].b.mask);
        free(l->slots[i].b.index);
    }
    if (l->sync_ok) {
        PT_CHECK(pthread_cond_destroy(&l->idle_cv));
        PT_CHECK(pthread_cond_destroy(&l->ready_cv));
        PT_CHECK(pthread_cond_destroy(&l->work_cv));
        PT_CHECK(pthread_mutex_destroy(&l->mu));
    }
    free(l->workers);
    free(l->slots);
    free(l->perm);
    free(l);
}

size_t cae_loader_steps_per_epoch(const cae_loader *l) { return l->steps; }

/* ---- the epoch -------------------------------------------------------------------- */

int cae_loader_start(cae_loader *l, uint64_t epoch, uint64_t first_step)
{
    int rc = 0;

    PT_CHECK(pthread_mutex_lock(&l->mu));
    for (int i = 0; i < l->nslots && rc == 0; i++)
        if (l->slots[i].state == SLOT_HELD) {
            cae_errorf("cae_loader_start: batch %llu of epoch %llu was not released",
                       (unsigned long long)l->slots[i].b.step,
                       (unsigned long long)l->slots[i].b.epoch);
            rc = -1;
        }
    if (rc == 0 && first_step > l->steps) {
        cae_errorf("cae_loader_start: step %llu of an epoch of %zu steps",
                   (unsigned long long)first_step, l->steps);
        rc = -1;
    }
    if (rc == 0 && l->failed) {
        cae_errorf("cae_loader_start: the loader stopped at an earlier error");
        rc = -1;
    }
    if (rc != 0) {
        PT_CHECK(pthread_mutex_unlock(&l->mu));
        return -1;
    }
    /* no new claims; wait for the samples in progress to land */
    l->paused = 1;
    while (l->busy > 0)
        PT_CHECK(pthread_cond_wait(&l->idle_cv, &l->mu));
    if (!l->perm_valid || l->perm_epoch != epoch) {
        cae_sampler_permutation(l->cfg.seed, epoch, l->len, l->perm);
        l->perm_epoch = epoch;
        l->perm_valid = 1;
    }
    l->epoch = epoch;
    l->next_assign = l->next_deliver = first_step;
    for (int i = 0; i < l->nslots; i++)
        l->slots[i].state = SLOT_FREE;
    assign_free(l);
    l->paused = 0;
    l->started = 1;
    PT_CHECK(pthread_cond_broadcast(&l->work_cv));
    PT_CHECK(pthread_mutex_unlock(&l->mu));
    return 0;
}

/* The slot being filled (or ready) with step, or NULL. */
static ring_slot *slot_of(cae_loader *l, uint64_t step)
{
    for (int i = 0; i < l->nslots; i++) {
        ring_slot *s = &l->slots[i];
        if ((s->state == SLOT_FILLING || s->state == SLOT_READY) && s->b.step == step)
            return s;
    }
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        cae_errorf("clock_gettime(CLOCK_MONOTONIC): %s", strerror(errno));
        return 0;
    }
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

int cae_loader_next(cae_loader *l, cae_batch **out)
{
    double t0 = now_ms();
    ring_slot *s, *c;
    int rc;

    *out = NULL;
    PT_CHECK(pthread_mutex_lock(&l->mu));
    for (;;) {
        if (!l->started) {
            cae_errorf("cae_loader_next: cae_loader_start was not called");
            rc = -1;
            break;
        }
        if (l->failed) {
            /* let the other samples in progress finish (and say what they have to say) */
            while (l->busy > 0)
                PT_CHECK(pthread_cond_wait(&l->idle_cv, &l->mu));
            rc = -1;
            break;
        }
        if (l->next_deliver >= l->steps) {
            rc = 1;
            break;
        }
        s = slot_of(l, l->next_deliver);
        if (s == NULL) {
            cae_errorf("cae_loader_next: all %d batches of the ring are held; release one first",
                       l->nslots);
            rc = -1;
            break;
        }
        if (s->state == SLOT_READY) {
            s->state = SLOT_HELD;
            l->next_deliver++;
            *out = &s->b;
            rc = 0;
            break;
        }
        /* without threads the caller makes the samples itself */
        if (l->cfg.num_workers == 0 && (c = find_claim(l)) != NULL)
            run_one(l, &l->workers[0], c);
        else
            PT_CHECK(pthread_cond_wait(&l->ready_cv, &l->mu));
    }
    PT_CHECK(pthread_mutex_unlock(&l->mu));
    if (rc == 0)
        (*out)->wait_ms = now_ms() - t0;
    return rc;
}

void cae_loader_release(cae_loader *l, cae_batch *b)
{
    ring_slot *s = (ring_slot *)b;

    if (b == NULL)
        return;
    PT_CHECK(pthread_mutex_lock(&l->mu));
    if (s->state == SLOT_HELD) {
        s->state = SLOT_FREE;
        assign_free(l);
        PT_CHECK(pthread_cond_broadcast(&l->work_cv));
    }
    PT_CHECK(pthread_mutex_unlock(&l->mu));
}

/* loader_cls.c: the classification programs' batches (see loader_cls.h):
 * one decoder, image and scratch per worker; worker w takes images w,
 * w + W, w + 2W, ... of a batch, the calling thread being worker 0. */
#define _POSIX_C_SOURCE 200809L
#include "data/loader_cls.h"

#include "runtime/errors.h"

#include <pthread.h>
#include <stdlib.h>

#define MAX_WORKERS 64

typedef struct {
    cae_decoder *dec;
    cae_image img;
    cae_augment_scratch *aug;
} worker;

struct cae_cls_loader {
    int n_workers;
    worker w[MAX_WORKERS];
};

/* One worker's share of a batch. */
typedef struct {
    worker *w;
    const cae_cls_source *src;
    const size_t *idx;
    const uint64_t *seeds;
    float *views;
    int32_t *labels;
    size_t n, first, stride;
    int rc;
} job;

int cae_cls_loader_new(cae_cls_loader **out, int num_workers, size_t max_batch)
{
    cae_cls_loader *l = *out = calloc(1, sizeof **out);
    if (!l) {
        cae_errorf("out of host memory");
        return -1;
    }
    l->n_workers = num_workers < 1 ? 1 : num_workers > MAX_WORKERS ? MAX_WORKERS : num_workers;
    if (max_batch > 0 && (size_t)l->n_workers > max_batch)
        l->n_workers = (int)max_batch;
    for (int i = 0; i < l->n_workers; i++) {
        worker *w = &l->w[i];
        w->dec = cae_decoder_new();
        w->aug = cae_augment_scratch_new();
        if (w->dec && w->aug)
            continue;
        cae_errorf("out of host memory for the loaders");
        cae_cls_loader_free(l); /* frees the workers made so far */
        *out = NULL;
        return -1;
    }
    return 0;
}

void cae_cls_loader_free(cae_cls_loader *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n_workers; i++) {
        cae_image_free(&l->w[i].img);
        if (l->w[i].dec)
            cae_decoder_free(l->w[i].dec);
        if (l->w[i].aug)
            cae_augment_scratch_free(l->w[i].aug);
    }
    free(l);
}

static int load_one(worker *w, const cae_cls_source *src, size_t idx, uint64_t seed, float *view,
                    int32_t *label)
{
    const cae_dataset *ds = src->ds;
    if (cae_dataset_get(ds, idx, w->dec, &w->img) != 0) {
        cae_errorf("%s: image %zu cannot be used", cae_dataset_describe(ds), idx);
        return -1;
    }
    *label = cae_dataset_label(ds, idx);
    if (*label < 0 || (size_t)*label >= src->num_classes) {
        cae_errorf("%s: label %d of image %zu is outside --nb_classes %zu",
                   cae_dataset_describe(ds), *label, idx, src->num_classes);
        return -1;
    }
    if (src->train)
        return cae_cls_train_transform(src->train, &w->img, seed, w->aug, view);
    if (src->aug)
        return cae_augment(src->aug, &w->img, seed, w->aug, view, NULL);
    /* the official evaluation: the shorter side resized to int(S / 0.875)
     * (bicubic), a center crop of S; inputs of 32 pixels or less are used
     * as they are (build_transform's rule: resizing a 28x28 Fashion-MNIST
     * image to 32 and cropping 28 would cut its edges) */
    return cae_cls_eval_transform(src->input_size, cae_cls_eval_crop_pct(src->input_size),
                                  CAE_FILTER_BICUBIC, src->imagenet_mean_std, &w->img, w->aug,
                                  view);
}

static void *run_job(void *arg)
{
    job *j = arg;
    size_t view = 3 * (size_t)j->src->input_size * (size_t)j->src->input_size;
    j->rc = 0;
    for (size_t i = j->first; i < j->n && j->rc == 0; i += j->stride)
        j->rc = load_one(j->w, j->src, j->idx[i], j->seeds ? j->seeds[i] : 0,
                         j->views + i * view, &j->labels[i]);
    return NULL;
}

int cae_cls_loader_load(cae_cls_loader *l, const cae_cls_source *src, const size_t *idx,
                        const uint64_t *seeds, size_t n, float *views, int32_t *labels)
{
    int W = l->n_workers, rc = 0;
    job jobs[MAX_WORKERS];
    pthread_t threads[MAX_WORKERS];
    int started[MAX_WORKERS] = {0};
    for (int w = 0; w < W; w++)
        jobs[w] = (job){&l->w[w], src, idx, seeds, views, labels, n, (size_t)w, (size_t)W, 0};
    for (int w = 1; w < W; w++)
        started[w] = pthread_create(&threads[w], NULL, run_job, &jobs[w]) == 0;
    for (int w = 0; w < W; w++)
        if (!started[w]) /* the calling thread's share, and any a thread could not take */
            run_job(&jobs[w]);
    for (int w = 1; w < W; w++)
        if (started[w])
            pthread_join(threads[w], NULL);
    for (int w = 0; w < W; w++)
        rc |= jobs[w].rc;
    return rc ? -1 : 0;
}

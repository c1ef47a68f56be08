/* loader_cls.h: labelled batches for the classification programs
 * (cae-cl-finetune, the probes), decoded and transformed on the caller's
 * demand over a few threads.
 *
 * The caller picks the images (data set indices) and, for a training
 * transform, each image's seed; image i of a batch goes to views[i] and
 * labels[i] and depends only on (index, seed), so the thread count never
 * changes a batch. Unlike the pretraining loader (loader.h) nothing is
 * prepared ahead and an unusable image is fatal: evaluation must see every
 * image, and fine-tuning's order is the caller's. */
#ifndef CAE_LOADER_CLS_H
#define CAE_LOADER_CLS_H

#include "data/augment.h"
#include "data/cls_transform.h"
#include "data/dataset.h"

#include <stddef.h>
#include <stdint.h>

/* What one image goes through: train (fine-tuning's timm transform), else
 * aug (the probes' pretraining-style augmentation), else the evaluation
 * transform (resize to S / crop_pct, center crop; cae_cls_eval_crop_pct). */
typedef struct {
    const cae_dataset *ds;
    size_t num_classes;        /* a label outside [0, num_classes) is an error */
    int input_size;            /* S */
    int imagenet_mean_std;     /* evaluation transform's normalization */
    const cae_cls_train_cfg *train;
    const cae_augment_cfg *aug;
} cae_cls_source;

typedef struct cae_cls_loader cae_cls_loader;

/* num_workers threads per batch, at least 1, at most 64 and max_batch. */
int cae_cls_loader_new(cae_cls_loader **out, int num_workers, size_t max_batch);
void cae_cls_loader_free(cae_cls_loader *l);
/* Images idx[0..n) of src into views [n,3,S,S] and labels [n]; seeds[i]
 * drives image i's random transform (unused, may be NULL, for the
 * evaluation transform). 0, or -1 after one line naming the image. */
int cae_cls_loader_load(cae_cls_loader *l, const cae_cls_source *src, const size_t *idx,
                        const uint64_t *seeds, size_t n, float *views, int32_t *labels);

#endif

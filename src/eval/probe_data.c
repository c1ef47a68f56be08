/* probe_data.c: the probes' images (data/loader_cls.h: the evaluation
 * transform, the training augmentation) and their features, of whole
 * splits or augmented batches, through the frozen encoder (see probe.h). */
#include "eval/probe.h"

#include "runtime/errors.h"
#include "train/train_log.h"

#include <stdlib.h>
#include <string.h>

int cae_probe_train_augment(cae_augment_cfg *aug, int input_size, int imagenet_mean_std)
{
    memset(aug, 0, sizeof *aug);
    aug->input_size = input_size;
    aug->crop_min = 0.08;
    aug->crop_max = 1.0;
    aug->interp = CAE_FILTER_BICUBIC;
    aug->second_interp = CAE_FILTER_BICUBIC;
    aug->imagenet_mean_std = imagenet_mean_std;
    return cae_augment_check(aug);
}

/* The source of ds's images, with the training augmentation when train. */
static cae_cls_source source(const cae_probe *p, const cae_dataset *ds, int train)
{
    cae_cls_source src = {ds, p->K, (int)p->S, p->a.imagenet_default_mean_and_std, NULL, NULL};
    if (train)
        src.aug = &p->aug;
    return src;
}

int cae_probe_extract(cae_probe *p, const cae_dataset *ds, int shard, float *feat,
                      int32_t *labels)
{
    size_t n = cae_dataset_len(ds), world = (size_t)p->ranks.world;
    cae_cls_source src = source(p, ds, 0);
    double t0 = cae_now_ms();
    for (size_t s = 0; s < n; s += p->B) {
        size_t m = n - s < p->B ? n - s : p->B;
        if (shard && world > 1 && (s / p->B) % world != (size_t)p->ranks.rank)
            continue;
        for (size_t i = 0; i < m; i++)
            p->batch_idx[i] = s + i;
        CAE_TRY(cae_cls_loader_load(p->loader, &src, p->batch_idx, NULL, m, p->images, labels + s));
        CAE_TRY(cae_encoder_eval_forward(&p->enc, p->images, m, p->pool, feat + s * p->F));
    }
    if (p->ranks.rank == 0) {
        printf("features of %s%s in %.1f s\n", cae_dataset_describe(ds),
               shard && world > 1 ? " (this rank's shard)" : "", (cae_now_ms() - t0) / 1e3);
        fflush(stdout);
    }
    return 0;
}

int cae_probe_augmented(cae_probe *p, const size_t *idx, cae_rng *r, float *feat, int32_t *labels)
{
    size_t first = (size_t)p->ranks.rank * p->B;
    size_t global = p->B * (size_t)(p->ranks.world > 1 ? p->ranks.world : 1);
    cae_cls_source src = source(p, p->train, 1);
    for (size_t g = 0; g < global; g++) {
        uint64_t seed = cae_rng_next(r);
        size_t i = g - first;
        if (g < first || i >= p->B)
            continue;
        p->batch_idx[i] = idx[g];
        p->batch_seeds[i] = seed;
    }
    CAE_TRY(cae_cls_loader_load(p->loader, &src, p->batch_idx, p->batch_seeds, p->B, p->images,
                                labels));
    return cae_encoder_eval_forward(&p->enc, p->images, p->B, p->pool, feat);
}

/* probe_data.c: the probes' images: the evaluation transform
 * (src/data/cls_transform.h), the training augmentation, and features of whole splits or augmented batches through
 * the frozen encoder (see probe.h). */
#include "eval/probe.h"

#include "data/cls_transform.h"
#include "runtime/errors.h"
#include "train/train_log.h"

#include <stdlib.h>
#include <string.h>

int cae_probe_loader_init(cae_probe_loader *l)
{
    memset(l, 0, sizeof *l);
    l->dec = cae_decoder_new();
    l->aug = cae_augment_scratch_new();
    if (!l->dec || !l->aug) {
        cae_errorf("out of host memory");
        cae_probe_loader_free(l);
        return -1;
    }
    return 0;
}

void cae_probe_loader_free(cae_probe_loader *l)
{
    cae_image_free(&l->img);
    if (l->dec)
        cae_decoder_free(l->dec);
    if (l->aug)
        cae_augment_scratch_free(l->aug);
    memset(l, 0, sizeof *l);
}

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

/* Load image idx (eval transform, or with aug the training transform from
 * seed) into view; its label into *label. Unusable images are fatal here:
 * evaluation must see every image. */
static int load_one(cae_probe *p, const cae_dataset *ds, size_t idx, const cae_augment_cfg *aug,
                    uint64_t seed, float *view, int32_t *label)
{
    cae_probe_loader *l = &p->loader;
    if (cae_dataset_get(ds, idx, l->dec, &l->img) != 0) {
        cae_errorf("%s: image %zu cannot be used", cae_dataset_describe(ds), idx);
        return -1;
    }
    *label = cae_dataset_label(ds, idx);
    if (*label < 0 || (size_t)*label >= p->K) {
        cae_errorf("%s: label %d of image %zu is outside --nb_classes %zu",
                   cae_dataset_describe(ds), *label, idx, p->K);
        return -1;
    }
    if (aug)
        return cae_augment(aug, &l->img, seed, l->aug, view, NULL);
    /* the official evaluation transform: the shorter side resized to
     * int(S / 0.875) (bicubic), a center crop of S. run_linear.py writes it
     * for 224 only; as cae-cl-finetune, the probes take build_transform's
     * rule for small inputs (used as they are): resizing a 28x28
     * Fashion-MNIST image to 32 and cropping 28 would cut its edges. */
    return cae_cls_eval_transform((int)p->S, cae_cls_eval_crop_pct((int)p->S), CAE_FILTER_BICUBIC,
                                  p->a.imagenet_default_mean_and_std, &l->img, l->aug, view);
}

int cae_probe_extract(cae_probe *p, const cae_dataset *ds, int shard, float *feat,
                      int32_t *labels)
{
    size_t n = cae_dataset_len(ds), view = 3 * p->S * p->S, world = (size_t)p->ranks.world;
    double t0 = cae_now_ms();
    for (size_t s = 0; s < n; s += p->B) {
        size_t m = n - s < p->B ? n - s : p->B;
        if (shard && world > 1 && (s / p->B) % world != (size_t)p->ranks.rank)
            continue;
        for (size_t i = 0; i < m; i++)
            CAE_TRY(load_one(p, ds, s + i, NULL, 0, p->images + i * view, &labels[s + i]));
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
    size_t view = 3 * p->S * p->S, first = (size_t)p->ranks.rank * p->B;
    size_t global = p->B * (size_t)(p->ranks.world > 1 ? p->ranks.world : 1);
    for (size_t g = 0; g < global; g++) {
        uint64_t seed = cae_rng_next(r);
        size_t i = g - first;
        if (g < first || i >= p->B)
            continue;
        CAE_TRY(load_one(p, p->train, idx[g], &p->aug, seed, p->images + i * view, &labels[i]));
    }
    return cae_encoder_eval_forward(&p->enc, p->images, p->B, p->pool, feat);
}

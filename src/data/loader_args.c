/* loader_args.c: flags -> masking and loader configuration. */
#include "data/loader_args.h"

#include "runtime/errors.h"

#include <string.h>

int cae_mask_cfg_from_args(const cae_args *a, cae_mask_cfg *out)
{
    memset(out, 0, sizeof *out);
    out->grid = a->model.input_size / a->model.patch_size;
    out->num_masking = a->model.num_mask_patches;
    if (strcmp(a->mask_generator, "block") == 0)
        out->block = 1;
    else if (strcmp(a->mask_generator, "random") != 0) {
        cae_errorf("--mask_generator %s: expected block or random", a->mask_generator);
        return -1;
    }
    out->min_per_block = a->min_mask_patches_per_block;
    out->max_per_block = a->max_mask_patches_per_block;
    return cae_mask_check(out);
}

int cae_loader_cfg_from_args(const cae_args *a, const cae_dataset *ds, int rank, int world,
                             cae_loader_cfg *out)
{
    memset(out, 0, sizeof *out);
    out->ds = ds;
    out->aug.input_size = a->model.input_size;
    out->aug.second_input_size = a->second_input_size;
    out->aug.crop_min = a->crop_min_size;
    out->aug.crop_max = a->crop_max_size;
    CAE_TRY(cae_filter_parse(a->train_interpolation, &out->aug.interp));
    CAE_TRY(cae_filter_parse(a->second_interpolation, &out->aug.second_interp));
    out->aug.color_jitter = a->color_jitter;
    out->aug.imagenet_mean_std = a->imagenet_default_mean_and_std;
    CAE_TRY(cae_mask_cfg_from_args(a, &out->mask));
    out->batch_size = (size_t)a->batch_size;
    out->num_workers = a->num_workers;
    out->seed = (uint64_t)a->seed;
    out->rank = rank;
    out->world_size = world;
    /* two batches in preparation per worker keep every worker busy */
    out->ring = a->num_workers > 0 ? 2 * a->num_workers : 1;
    return 0;
}

/* loader_args.h: the masking and loader configuration the command line
 * describes, shared by the programs that train (cae-cl-train, cae-cl-bench)
 * so that a flag means the same in each. */
#ifndef CAE_LOADER_ARGS_H
#define CAE_LOADER_ARGS_H

#include "train/args.h"
#include "data/loader.h"

/* --mask_generator, --num_mask_patches, --{min,max}_mask_patches_per_block;
 * -1 with one line naming the flag when they are unusable. */
int cae_mask_cfg_from_args(const cae_args *a, cae_mask_cfg *out);

/* Augmentation, masking, batch, workers and seed for rank of world over ds. */
int cae_loader_cfg_from_args(const cae_args *a, const cae_dataset *ds, int rank, int world,
                             cae_loader_cfg *out);

#endif

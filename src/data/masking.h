/* masking.h: which patches are masked. Block-wise (BEiT/CAE
 * MaskingGenerator: rectangles of random area in [min_per_block,
 * remaining] and log-uniform aspect ratio in [0.3, 1/0.3], placed until
 * exactly num_masking patches are masked) or a uniformly random subset. */
#ifndef CAE_MASKING_H
#define CAE_MASKING_H

#include <stdint.h>

typedef struct {
    int grid;          /* G: the mask is G x G, row-major */
    int num_masking;   /* M, exactly */
    int block;         /* 1: block-wise; 0: random subset */
    int min_per_block; /* --min_mask_patches_per_block (16) */
    int max_per_block; /* --max_mask_patches_per_block; <= 0: no limit */
} cae_mask_cfg;

/* Checks the configuration (one line naming the flag on error). */
int cae_mask_check(const cae_mask_cfg *cfg);
/* mask[G*G] gets exactly M ones; a pure function of rng_seed. */
void cae_mask_generate(const cae_mask_cfg *cfg, uint64_t rng_seed, unsigned char *mask);

#endif

/* masking.c: CAE's MaskingGenerator (block-wise) and the random subset.
 *
 * Block-wise, as the official code loops:
 *
 *   while mask_count != M:
 *       max = min(M - mask_count, max_per_block)
 *       mask_count += _mask(mask, max)
 *
 * where _mask makes up to 10 attempts: area = uniform(min_per_block, max),
 * aspect = exp(uniform(log 0.3, log(1/0.3))), h = round(sqrt(area * aspect)),
 * w = round(sqrt(area / aspect)); a rectangle with w < G and h < G at a
 * random place is taken only if it adds between 1 and max new cells, and
 * the first attempt that adds any ends the call. No rectangle ever adds more
 * than what remains, so the count lands on M exactly.
 *
 * Python loops forever when no rectangle can add the right number of cells
 * (G = 2 with M = 4 and 16 patches per block, for one). cae_mask_check
 * refuses the configurations that cannot finish: it checks the plain bounds
 * and then runs the generator on a few fixed seeds with a cap on the number
 * of _mask calls. The generator keeps the same cap; should a run ever reach
 * it (cae_mask_check makes that practically impossible), the remaining cells
 * are drawn uniformly so the mask still has exactly M ones. */
#include "data/masking.h"
#include "data/rng.h"

#include "runtime/errors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MASK_MAX_CALLS 100000 /* _mask calls per mask before giving up */
#define MASK_PROBE_SEEDS 16
#define MASK_MIN_ASPECT 0.3

/* One _mask call: the number of cells it masked (0 .. max_patches). */
static int mask_once(const cae_mask_cfg *cfg, cae_rng *r, unsigned char *mask, int max_patches)
{
    const int G = cfg->grid;
    const double log_lo = log(MASK_MIN_ASPECT), log_hi = log(1 / MASK_MIN_ASPECT);
    int delta = 0;
    for (int attempt = 0; attempt < 10; attempt++) {
        double area = cae_rng_range(r, cfg->min_per_block, max_patches);
        double aspect = exp(cae_rng_range(r, log_lo, log_hi));
        /* int(round(...)): Python rounds half to even, as rint does */
        double hf = rint(sqrt(area * aspect));
        double wf = rint(sqrt(area / aspect));
        if (wf < G && hf < G) { /* false for NaN too: nothing to convert */
            int h = (int)hf, w = (int)wf;
            int top = (int)cae_rng_int(r, 0, G - h);
            int left = (int)cae_rng_int(r, 0, G - w);
            int masked = 0;
            for (int i = top; i < top + h; i++)
                for (int j = left; j < left + w; j++)
                    masked += mask[i * G + j];
            if (h * w - masked > 0 && h * w - masked <= max_patches) {
                for (int i = top; i < top + h; i++)
                    for (int j = left; j < left + w; j++)
                        if (!mask[i * G + j]) {
                            mask[i * G + j] = 1;
                            delta++;
                        }
            }
            if (delta > 0)
                break;
        }
    }
    return delta;
}

/* The official loop from an empty mask; the number of masked cells when
 * it stops: M, or less if it hit the cap. */
static int mask_blocks(const cae_mask_cfg *cfg, cae_rng *r, unsigned char *mask)
{
    const int M = cfg->num_masking;
    const int max_block = cfg->max_per_block > 0 ? cfg->max_per_block : M;
    int count = 0;
    for (long calls = 0; count != M && calls < MASK_MAX_CALLS; calls++) {
        int max_patches = M - count < max_block ? M - count : max_block;
        count += mask_once(cfg, r, mask, max_patches);
    }
    return count;
}

/* Mask `want` more cells, a uniform subset of the unmasked ones (Knuth's
 * selection sampling: each candidate is taken with probability
 * still-wanted / candidates-left). */
static void mask_random(int n_cells, int want, cae_rng *r, unsigned char *mask)
{
    int left = 0;
    for (int i = 0; i < n_cells; i++)
        left += !mask[i];
    for (int i = 0; i < n_cells && want > 0; i++) {
        if (mask[i])
            continue;
        if (cae_rng_int(r, 0, left - 1) < want) {
            mask[i] = 1;
            want--;
        }
        left--;
    }
}

int cae_mask_check(const cae_mask_cfg *cfg)
{
    unsigned char *mask;
    int G = cfg->grid, rc = 0;
    if (G < 1 || G > 1024) {
        cae_errorf("mask grid %d (--input_size / --patch_size): must be in 1..1024", G);
        return -1;
    }
    if (cfg->num_masking < 0 || cfg->num_masking > G * G) {
        cae_errorf("--num_mask_patches %d: must be in 0..%d (the %dx%d patch grid)",
                   cfg->num_masking, G * G, G, G);
        return -1;
    }
    if (!cfg->block || cfg->num_masking == 0)
        return 0;
    if (cfg->min_per_block < 0) {
        cae_errorf("--min_mask_patches_per_block %d: must be >= 0", cfg->min_per_block);
        return -1;
    }
    if (G < 2) {
        cae_errorf("--mask_generator block: a %dx%d patch grid has no room for blocks (their "
                   "sides must be smaller than the grid); use --mask_generator random", G, G);
        return -1;
    }
    mask = malloc((size_t)G * (size_t)G);
    if (mask == NULL) {
        cae_errorf("masking: out of memory (%s:%d)", __FILE__, __LINE__);
        return -1;
    }
    /* The generator cannot be proven to finish in general: try it. */
    for (uint64_t seed = 0; seed < MASK_PROBE_SEEDS && rc == 0; seed++) {
        cae_rng r;
        memset(mask, 0, (size_t)G * (size_t)G);
        cae_rng_seed(&r, 0x6d61736bull + seed);
        if (mask_blocks(cfg, &r, mask) != cfg->num_masking) {
            cae_errorf("--mask_generator block cannot place %d of %d patches with "
                       "--min_mask_patches_per_block %d and --max_mask_patches_per_block %d "
                       "(no block fits what remains); lower --min_mask_patches_per_block or "
                       "--num_mask_patches",
                       cfg->num_masking, G * G, cfg->min_per_block, cfg->max_per_block);
            rc = -1;
        }
    }
    free(mask);
    return rc;
}

void cae_mask_generate(const cae_mask_cfg *cfg, uint64_t rng_seed, unsigned char *mask)
{
    const int n = cfg->grid * cfg->grid;
    cae_rng r;
    int count;
    memset(mask, 0, (size_t)n);
    cae_rng_seed(&r, rng_seed);
    if (!cfg->block) {
        mask_random(n, cfg->num_masking, &r, mask);
        return;
    }
    count = mask_blocks(cfg, &r, mask);
    if (count != cfg->num_masking)
        mask_random(n, cfg->num_masking - count, &r, mask);
}

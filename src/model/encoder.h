/* encoder.h: the ViT encoder of CAE (src/model/DESIGN.md §1), written once for its
 * three users: pretraining (cae_step.c) runs it over the visible patches
 * and, for the alignment target, over the masked ones; evaluation
 * (encoder_eval.c) and fine-tuning (finetune_model.c) over all of them.
 *
 *   tokens = [cls_token, patch_embed(patches of idx) + pos[1 + idx]]
 *   stream = blocks(tokens), drop path rising linearly over the blocks
 *
 * The token set (J patches per sample, their raster indices in idx) is the
 * caller's; the final LayerNorm, pooling and heads are the callers' too.
 * Also the drop-path schedule every block stack of the model uses.
 */
#ifndef CAE_ENCODER_H
#define CAE_ENCODER_H

#include "model/blocks.h"
#include "model/cae_config.h"

#include <stdint.h>

/* the encoder's tensors in one arena (parameters or their gradients) */
typedef struct {
    cae_buf cls_token, patch_w, patch_b; /* [D], [D, 3PP], [D] */
    cae_block_w *blocks;                 /* depth */
} cae_encoder_w;

/* one pass over a token set: the cls token and J patches per sample */
typedef struct {
    size_t J;
    cae_buf idx;            /* int [B,J] patch indices in raster order (the caller's) */
    cae_buf patches, emb;   /* [B*J, 3PP], [B*J, D] */
    cae_buf cls_rows;       /* [B, D] the cls token once per sample */
    cae_buf *stream;        /* depth+1 x [B*(1+J), D]; in place: one */
    cae_block_acts *blocks; /* depth; in place: one, shared by every block */
    int in_place;           /* forward only: every block reads and writes one stream */
} cae_encoder_acts;

/* Views of <prefix>cls_token, <prefix>patch_embed.proj.*, <prefix>blocks.i.*
 * in an arena laid out by t; free with cae_encoder_w_free. */
int cae_encoder_view(cae_encoder_w *w, const cae_param_table *t, const cae_arena *a,
                     const char *prefix, int depth);
void cae_encoder_w_free(cae_encoder_w *w);

/* Request from p what a pass over J patches of up to B samples keeps
 * (everything but idx); -1 (reported) when out of host memory. */
int cae_encoder_plan(cae_encoder_acts *a, cae_planner *p, const cae_config *c, size_t B, size_t J,
                     int in_place);
void cae_encoder_acts_free(cae_encoder_acts *a);

/* Token set "every patch": idx [B,J] = 0..J-1 per sample. */
int cae_encoder_all_patches(cae_ctx *ctx, const cae_encoder_acts *a, size_t B);
/* The fixed sin-cos position table [1+grid^2, width] (row 0, cls: zeros). */
int cae_pos_table_upload(cae_ctx *ctx, cae_buf pos, size_t grid, size_t width);

/* The final block's output stream [B*(1+J), D]. */
cae_buf cae_encoder_out(const cae_encoder_acts *a, const cae_config *c);

/* The stream of B samples [B,3,S,S] through the patch embedding (pos: the
 * position table) and the blocks; drop: the stack's scales [depth,2,B] or
 * null (off). */
int cae_encoder_forward(cae_ctx *ctx, cae_encoder_acts *a, cae_buf samples, cae_buf pos,
                        const cae_encoder_w *w, cae_buf drop, const cae_config *c, size_t B);

/* Called after each block's backward is enqueued (last block first). */
typedef struct {
    int (*block_done)(void *user, int block);
    void *user;
} cae_encoder_hook;

/* dstream holds d(cae_encoder_out) on entry and d(tokens) on return; the
 * gradients of every encoder tensor accumulate into g. Not for an in-place
 * pass. hook may be NULL. */
int cae_encoder_backward(cae_ctx *ctx, const cae_encoder_w *g, cae_buf dstream,
                         const cae_encoder_acts *a, const cae_encoder_w *w, cae_buf drop,
                         const cae_scratch *s, const cae_config *c, size_t B,
                         const cae_encoder_hook *hook);

/* ---- drop path ---- */
/* Block i's rate in a stack of depth blocks, as timm's
 * torch.linspace(0, drop_path, depth)[i]. */
double cae_drop_path_rate(double drop_path, int i, int depth);
/* The per-sample scales themselves (0 or 1/(1-rate)), reproducible from
 * (seed, step): layout [stack][block][branch][sample] over n_stacks stacks
 * of depths[] blocks. */
void cae_drop_path_fill(float *s, const int *depths, int n_stacks, size_t B, double drop_path,
                        uint64_t seed, uint64_t step);
/* The same, written to the device buffer scales. */
int cae_drop_path_upload(cae_ctx *ctx, cae_buf scales, const int *depths, int n_stacks, size_t B,
                         double drop_path, uint64_t seed, uint64_t step);
/* Block i's two branch scales [B] from its stack's [depth,2,B]; both null
 * when stack is null (drop path off). */
void cae_drop_path_at(cae_buf stack, size_t B, int i, cae_buf *d1, cae_buf *d2);

/* splitmix64: the counter-based generator of the draws (also the
 * initialization's), so every draw is reproducible on its own. */
uint64_t cae_mix64(uint64_t x);

#endif

/* encoder.c: the ViT encoder of CAE, once for pretraining, evaluation and
 * fine-tuning (see encoder.h): weights views, activation plan, patch
 * embedding and block stack forward above backward, and the drop-path
 * schedule. Parameter gradients accumulate; the stream gradient is
 * overwritten block by block (the residual stream). */
#include "model/encoder.h"

#include "ops/ops.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- weights */

int cae_encoder_view(cae_encoder_w *w, const cae_param_table *t, const cae_arena *a,
                     const char *prefix, int depth)
{
    char name[CAE_PARAM_NAME_MAX];
    w->blocks = calloc((size_t)depth + 1, sizeof *w->blocks);
    if (!w->blocks) {
        cae_errorf("out of host memory");
        return -1;
    }
#define VIEW(s) (snprintf(name, sizeof name, "%s%s", prefix, s), cae_params_view(t, a, name))
    w->cls_token = VIEW("cls_token");
    w->patch_w = VIEW("patch_embed.proj.weight");
    w->patch_b = VIEW("patch_embed.proj.bias");
#undef VIEW
    for (int i = 0; i < depth; i++) {
        snprintf(name, sizeof name, "%sblocks.%d", prefix, i);
        cae_block_view(t, a, &w->blocks[i], name);
    }
    return 0;
}

void cae_encoder_w_free(cae_encoder_w *w)
{
    free(w->blocks);
    w->blocks = NULL;
}

/* ---------------------------------------------------------------- memory */

int cae_encoder_plan(cae_encoder_acts *a, cae_planner *p, const cae_config *c, size_t B, size_t J,
                     int in_place)
{
    size_t D = (size_t)c->embed_dim, P = (size_t)c->patch_size, T = B * (J + 1);
    size_t kept = in_place ? 1 : (size_t)c->depth; /* blocks whose activations are kept */
    cae_block_dims d = {B, J + 1, D, (size_t)c->num_heads, (size_t)c->mlp_hidden};
    a->J = J;
    a->in_place = in_place;
    a->stream = calloc(kept + 1, sizeof *a->stream);
    a->blocks = calloc(kept + 1, sizeof *a->blocks);
    if (!a->stream || !a->blocks) {
        cae_errorf("out of host memory");
        return -1;
    }
    cae_plan_take(p, &a->patches, B * J * 3 * P * P);
    cae_plan_take(p, &a->emb, B * J * D);
    cae_plan_take(p, &a->cls_rows, B * D);
    for (size_t i = 0; i <= (in_place ? 0 : kept); i++)
        cae_plan_take(p, &a->stream[i], T * D);
    for (size_t i = 0; i < kept; i++)
        cae_block_plan(p, &a->blocks[i], &d);
    return 0;
}

void cae_encoder_acts_free(cae_encoder_acts *a)
{
    free(a->stream);
    free(a->blocks);
    a->stream = NULL;
    a->blocks = NULL;
}

int cae_encoder_all_patches(cae_ctx *ctx, const cae_encoder_acts *a, size_t B)
{
    size_t n = B * a->J;
    int32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    int rc;
    if (!idx) {
        cae_errorf("out of host memory");
        return -1;
    }
    for (size_t i = 0; i < B; i++)
        for (size_t n = 0; n < a->J; n++)
            idx[i * a->J + n] = (int32_t)n;
    rc = cae_write(ctx, a->idx, idx, n * 4);
    free(idx);
    return rc;
}

int cae_pos_table_upload(cae_ctx *ctx, cae_buf pos, size_t grid, size_t width)
{
    size_t rows = grid * grid + 1;
    float *t = malloc(rows * width * sizeof *t);
    int rc = -1;
    if (!t) {
        cae_errorf("out of host memory");
        return -1;
    }
    if (cae_sincos_table(t, grid, width) == 0)
        rc = cae_write(ctx, pos, t, rows * width * 4);
    free(t);
    return rc;
}

/* ---------------------------------------------------------------- forward */

/* Stream i (0: the tokens, i: block i's output); one for every i in place. */
static cae_buf stream_at(const cae_encoder_acts *a, int i)
{
    return a->stream[a->in_place ? 0 : i];
}

static cae_block_acts *block_acts(const cae_encoder_acts *a, int i)
{
    return &a->blocks[a->in_place ? 0 : i];
}

cae_buf cae_encoder_out(const cae_encoder_acts *a, const cae_config *c)
{
    return stream_at(a, c->depth);
}

static cae_block_dims block_dims(const cae_encoder_acts *a, const cae_config *c, size_t B)
{
    cae_block_dims d = {B, a->J + 1, (size_t)c->embed_dim, (size_t)c->num_heads,
                        (size_t)c->mlp_hidden};
    return d;
}

/* patch embedding = a linear map of each flattened patch, + position */
static int embed_forward(cae_ctx *ctx, cae_encoder_acts *a, cae_buf samples, cae_buf pos,
                         const cae_encoder_w *w, const cae_config *c, size_t B)
{
    size_t J = a->J, D = (size_t)c->embed_dim, P = (size_t)c->patch_size;
    cae_buf tokens = stream_at(a, 0);
    CAE_TRY(cae_patchify(ctx, a->patches, samples, a->idx, B, J, (size_t)c->input_size, P));
    CAE_TRY(cae_linear_forward(ctx, a->emb, a->patches, w->patch_w, w->patch_b, B * J, 3 * P * P,
                               D));
    CAE_TRY(cae_gather_rows(ctx, a->emb, cae_buf_at(pos, D), 0, a->idx, B, J, D, CAE_ACCUMULATE));
    /* tokens = [cls, patches]; the cls position embedding is zero */
    CAE_TRY(cae_broadcast_row(ctx, a->cls_rows, w->cls_token, B, D));
    CAE_TRY(cae_copy_blocks(ctx, tokens, (J + 1) * D, a->cls_rows, D, B, D, CAE_OVERWRITE));
    return cae_copy_blocks(ctx, cae_buf_at(tokens, D), (J + 1) * D, a->emb, J * D, B, J * D,
                           CAE_OVERWRITE);
}

int cae_encoder_forward(cae_ctx *ctx, cae_encoder_acts *a, cae_buf samples, cae_buf pos,
                        const cae_encoder_w *w, cae_buf drop, const cae_config *c, size_t B)
{
    cae_block_dims d = block_dims(a, c, B);
    CAE_TRY(embed_forward(ctx, a, samples, pos, w, c, B));
    /* in place, a block reads its input only before writing its output */
    for (int i = 0; i < c->depth; i++) {
        cae_buf d1, d2;
        cae_drop_path_at(drop, B, i, &d1, &d2);
        CAE_TRY(cae_block_forward(ctx, &w->blocks[i], block_acts(a, i), stream_at(a, i + 1),
                                  stream_at(a, i), &d, d1, d2));
    }
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* dtokens [B*(1+J), D]: the cls token's gradient is the sum of every
 * sample's row 0; the patch embedding's comes from the rest (positions are
 * fixed). */
static int embed_backward(cae_ctx *ctx, const cae_encoder_w *g, cae_buf dtokens,
                          const cae_encoder_acts *a, const cae_encoder_w *w, const cae_scratch *s,
                          const cae_config *c, size_t B)
{
    size_t J = a->J, D = (size_t)c->embed_dim, P = (size_t)c->patch_size;
    CAE_TRY(cae_copy_blocks(ctx, s->d1, D, dtokens, (J + 1) * D, B, D, CAE_OVERWRITE));
    CAE_TRY(cae_colsum_add(ctx, g->cls_token, s->d1, B, D));
    CAE_TRY(cae_copy_blocks(ctx, s->d2, J * D, cae_buf_at(dtokens, D), (J + 1) * D, B, J * D,
                            CAE_OVERWRITE));
    return cae_linear_backward(ctx, cae_buf_null(), g->patch_w, g->patch_b, s->d2, a->patches,
                               w->patch_w, B * J, 3 * P * P, D, CAE_OVERWRITE);
}

int cae_encoder_backward(cae_ctx *ctx, const cae_encoder_w *g, cae_buf dstream,
                         const cae_encoder_acts *a, const cae_encoder_w *w, cae_buf drop,
                         const cae_scratch *s, const cae_config *c, size_t B,
                         const cae_encoder_hook *hook)
{
    cae_block_dims d = block_dims(a, c, B);
    if (a->in_place) {
        cae_errorf("internal error: an in-place encoder pass keeps nothing for backward");
        return -1;
    }
    for (int i = c->depth - 1; i >= 0; i--) {
        cae_buf d1, d2;
        cae_drop_path_at(drop, B, i, &d1, &d2);
        CAE_TRY(cae_block_backward(ctx, &w->blocks[i], &g->blocks[i], &a->blocks[i], dstream,
                                   a->stream[i], &d, d1, d2, s));
        if (hook && hook->block_done)
            CAE_TRY(hook->block_done(hook->user, i));
    }
    return embed_backward(ctx, g, dstream, a, w, s, c, B);
}

/* ---------------------------------------------------------------- drop path */

uint64_t cae_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

double cae_drop_path_rate(double drop_path, int i, int depth)
{
    return depth > 1 ? drop_path * i / (depth - 1) : 0.0;
}

void cae_drop_path_fill(float *s, const int *depths, int n_stacks, size_t B, double drop_path,
                        uint64_t seed, uint64_t step)
{
    size_t k = 0;
    for (int stack = 0; stack < n_stacks; stack++) {
        for (int i = 0; i < depths[stack]; i++) {
            double rate = cae_drop_path_rate(drop_path, i, depths[stack]);
            for (int branch = 0; branch < 2; branch++) {
                for (size_t b = 0; b < B; b++, k++) {
                    uint64_t r = cae_mix64(cae_mix64(cae_mix64(seed) ^ step) ^
                                                (uint64_t)k);
                    double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
                    s[k] = rate <= 0 ? 1.0f : (u < rate ? 0.0f : (float)(1.0 / (1.0 - rate)));
                }
            }
        }
    }
}

int cae_drop_path_upload(cae_ctx *ctx, cae_buf scales, const int *depths, int n_stacks, size_t B,
                         double drop_path, uint64_t seed, uint64_t step)
{
    size_t n = 0;
    float *s;
    int rc;
    for (int i = 0; i < n_stacks; i++)
        n += (size_t)depths[i] * 2 * B;
    s = malloc((n ? n : 1) * sizeof *s);
    if (!s) {
        cae_errorf("out of host memory");
        return -1;
    }
    cae_drop_path_fill(s, depths, n_stacks, B, drop_path, seed, step);
    rc = cae_write(ctx, scales, s, n * 4);
    free(s);
    return rc;
}

void cae_drop_path_at(cae_buf stack, size_t B, int i, cae_buf *d1, cae_buf *d2)
{
    if (!stack.mem) {
        *d1 = *d2 = cae_buf_null();
        return;
    }
    *d1 = cae_buf_at(stack, (size_t)i * 2 * B);
    *d2 = cae_buf_at(stack, (size_t)i * 2 * B + B);
}

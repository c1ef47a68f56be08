/* encoder_eval.c: the frozen encoder of the evaluation programs (see
 * encoder_eval.h). */
#include "eval/encoder_eval.h"

#include "ops/ops.h"
#include "safetensors/safetensors.h"

#include <stdlib.h>
#include <string.h>

int cae_patch_embed_upload(cae_ctx *ctx, const cae_config *cfg, const cae_patch_embed_bufs *b,
                           size_t B)
{
    size_t N = (size_t)cfg->num_patches, D = (size_t)cfg->embed_dim;
    int32_t *idx = malloc(B * N * sizeof *idx);
    float *pos = malloc((N + 1) * D * sizeof *pos);
    int rc = -1;
    if (!idx || !pos) {
        cae_errorf("out of host memory");
        goto out;
    }
    /* every patch of every image, in raster order; the position table */
    for (size_t i = 0; i < B; i++)
        for (size_t n = 0; n < N; n++)
            idx[i * N + n] = (int32_t)n;
    if (cae_write(ctx, b->idx, idx, B * N * 4) != 0 ||
        cae_sincos_table(pos, (size_t)cfg->grid, D) != 0 ||
        cae_write(ctx, b->pos, pos, (N + 1) * D * 4) != 0)
        goto out;
    rc = 0;
out:
    free(idx);
    free(pos);
    return rc;
}

int cae_patch_embed_forward(cae_ctx *ctx, const cae_config *cfg, const cae_patch_embed_bufs *b,
                            cae_buf cls_token, cae_buf patch_w, cae_buf patch_b, cae_buf stream,
                            size_t n)
{
    size_t N = (size_t)cfg->num_patches, D = (size_t)cfg->embed_dim;
    size_t P = (size_t)cfg->patch_size, S = (size_t)cfg->input_size;
    CAE_TRY(cae_patchify(ctx, b->patches, b->samples, b->idx, n, N, S, P));
    CAE_TRY(cae_linear_forward(ctx, b->emb, b->patches, patch_w, patch_b, n * N, 3 * P * P, D));
    CAE_TRY(cae_gather_rows(ctx, b->emb, cae_buf_at(b->pos, D), 0, b->idx, n, N, D,
                            CAE_ACCUMULATE));
    /* tokens = [cls, patches]; the cls position embedding is zero */
    CAE_TRY(cae_broadcast_row(ctx, b->cls_rows, cls_token, n, D));
    CAE_TRY(cae_copy_blocks(ctx, stream, (N + 1) * D, b->cls_rows, D, n, D, CAE_OVERWRITE));
    return cae_copy_blocks(ctx, cae_buf_at(stream, D), (N + 1) * D, b->emb, N * D, n, N * D,
                           CAE_OVERWRITE);
}

static cae_patch_embed_bufs embed_bufs(const cae_encoder_eval *e)
{
    cae_patch_embed_bufs b = {e->samples, e->idx, e->pos, e->patches, e->emb, e->cls_rows};
    return b;
}

static cae_buf view(const cae_encoder_eval *e, const char *name)
{
    return cae_params_view(&e->table, &e->params, name);
}

/* a sequential planner over one buffer: each request 16-element aligned */
static void take(size_t *used, cae_buf *slot, size_t elems)
{
    *used = (*used + 15) / 16 * 16;
    slot->off = *used;
    *used += elems ? elems : 1;
}

static int alloc_buf(cae_ctx *ctx, cl_mem *mem, cae_buf *b, size_t elems)
{
    CAE_TRY(cae_alloc(ctx, (elems ? elems : 1) * 4, mem));
    b->mem = *mem;
    b->off = 0;
    return 0;
}

int cae_encoder_eval_init(cae_encoder_eval *e, cae_ctx *ctx, const cae_config *cfg, size_t batch)
{
    size_t B = batch, N = (size_t)cfg->num_patches, D = (size_t)cfg->embed_dim;
    size_t P = (size_t)cfg->patch_size, S = (size_t)cfg->input_size, T = B * (N + 1);
    size_t H = (size_t)cfg->num_heads, hid = (size_t)cfg->mlp_hidden, used = 0;
    cae_buf *slots[32];
    size_t n_slots = 0;
    cae_block_acts *a = &e->acts;
    cae_patch_embed_bufs eb;

    memset(e, 0, sizeof *e);
    e->ctx = ctx;
    e->cfg = *cfg;
    e->B = B;
    if (B == 0) {
        cae_errorf("--batch_size 0: must be positive");
        return -1;
    }
    if (cae_params_build(&e->table, cfg, cae_params_chunk_limit(ctx)) != 0)
        return -1;
    if (cae_arena_alloc(ctx, &e->table, &e->params) != 0)
        goto fail;
    e->blocks = calloc((size_t)cfg->depth + 1, sizeof *e->blocks);
    if (!e->blocks) {
        cae_errorf("out of host memory");
        goto fail;
    }
    e->cls_token = view(e, "encoder.cls_token");
    e->patch_w = view(e, "encoder.patch_embed.proj.weight");
    e->patch_b = view(e, "encoder.patch_embed.proj.bias");
    for (int i = 0; i < cfg->depth; i++) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "encoder.blocks.%d", i);
        cae_block_view(&e->table, &e->params, &e->blocks[i], prefix);
    }
    e->norm.w = view(e, "encoder.norm.weight");
    e->norm.b = view(e, "encoder.norm.bias");

    /* host-written inputs get buffers of their own; the rest share one */
    if (alloc_buf(ctx, &e->samples_mem, &e->samples, B * 3 * S * S) != 0 ||
        alloc_buf(ctx, &e->idx_mem, &e->idx, B * N) != 0)
        goto fail;
    cae_mha_dims md = {B, H, N + 1, N + 1, D / H, 1.0f};
#define TAKE(slot, n) (take(&used, slot, n), slots[n_slots++] = slot)
    TAKE(&e->pos, (N + 1) * D);
    TAKE(&e->patches, B * N * 3 * P * P);
    TAKE(&e->emb, B * N * D);
    TAKE(&e->cls_rows, B * D);
    TAKE(&e->stream, T * D);
    TAKE(&e->out, T * D);
    TAKE(&e->out_mean, T);
    TAKE(&e->out_rstd, T);
    TAKE(&e->pooled, B * D);
    TAKE(&a->ln1, T * D);
    TAKE(&a->ln1_mean, T);
    TAKE(&a->ln1_rstd, T);
    TAKE(&a->qkv, T * 3 * D);
    TAKE(&a->p, cae_mha_saved_elems(ctx, &md));
    TAKE(&a->merged, T * D);
    TAKE(&a->attn, T * D);
    TAKE(&a->x_mid, T * D);
    TAKE(&a->ln2, T * D);
    TAKE(&a->ln2_mean, T);
    TAKE(&a->ln2_rstd, T);
    TAKE(&a->h_pre, T * hid);
    TAKE(&a->h_act, T * hid);
    TAKE(&a->mlp, T * D);
#undef TAKE
    if ((double)used * 4 > (double)ctx->max_alloc) {
        cae_errorf("the evaluation encoder needs %.0f MiB of activations in one buffer for "
                   "batch %zu, more than %s allows (%.0f MiB); reduce --batch_size",
                   (double)used * 4 / 1048576.0, B, ctx->device_name,
                   (double)ctx->max_alloc / 1048576.0);
        goto fail;
    }
    if (cae_alloc(ctx, used * 4, &e->act_mem) != 0)
        goto fail;
    for (size_t i = 0; i < n_slots; i++)
        slots[i]->mem = e->act_mem;

    eb = embed_bufs(e);
    if (cae_patch_embed_upload(ctx, cfg, &eb, B) != 0)
        goto fail;
    return 0;
fail:
    cae_encoder_eval_free(e);
    return -1;
}

void cae_encoder_eval_free(cae_encoder_eval *e)
{
    if (!e->ctx)
        return;
    cae_release(&e->samples_mem);
    cae_release(&e->idx_mem);
    cae_release(&e->act_mem);
    cae_arena_free(&e->params);
    cae_params_free(&e->table);
    free(e->blocks);
    memset(e, 0, sizeof *e);
}

/* Copy every encoder.* tensor of the table from the file; other tensors in
 * the file (the rest of a pretraining checkpoint, optimizer moments,
 * official derived tensors) are ignored. */
static int load_encoder(cae_encoder_eval *e, const char *path)
{
    cae_st_file f;
    float **image;
    int rc = -1;
    size_t loaded = 0;

    if (cae_st_read(&f, path) != 0)
        return -1;
    image = cae_arena_image_new(&e->table);
    if (!image)
        goto out;
    for (size_t i = 0; i < e->table.n; i++) {
        const cae_param *p = &e->table.p[i];
        const cae_st_tensor *st;
        if (strncmp(p->name, "encoder.", 8) != 0)
            continue;
        st = cae_st_expect(&f, p->name, CAE_DT_F32, p->ndim, p->shape);
        if (!st)
            goto out;
        memcpy(image[p->chunk] + p->off, st->data, p->numel * 4);
        loaded++;
    }
    if (loaded == 0) {
        cae_errorf("%s: no encoder.* tensors", path);
        goto out;
    }
    rc = cae_arena_write_image(e->ctx, &e->table, &e->params, image);
out:
    if (image)
        cae_arena_image_free(&e->table, image);
    cae_st_free(&f);
    return rc;
}

int cae_encoder_eval_load(cae_encoder_eval *e, const char *finetune, uint64_t seed)
{
    if (finetune && strcmp(finetune, "random") == 0) {
        /* cae_model_init_weights reads only ctx, table and params: the same
         * draws over the same table as a pretraining model's init */
        cae_model m;
        memset(&m, 0, sizeof m);
        m.ctx = e->ctx;
        m.cfg = e->cfg;
        m.table = e->table;
        m.params = e->params;
        return cae_model_init_weights(&m, seed);
    }
    if (!finetune || !finetune[0]) {
        cae_errorf("--finetune: give a checkpoint, a weights .safetensors or 'random'");
        return -1;
    }
    return load_encoder(e, finetune);
}

size_t cae_encoder_eval_feature_size(const cae_encoder_eval *e, cae_pool pool)
{
    size_t D = (size_t)e->cfg.embed_dim, N = (size_t)e->cfg.num_patches;
    return pool == CAE_POOL_TOKENS || pool == CAE_POOL_TOKENS_PRENORM ? (N + 1) * D : D;
}

int cae_encoder_eval_forward(cae_encoder_eval *e, const float *images, size_t n, cae_pool pool,
                             float *features)
{
    cae_ctx *ctx = e->ctx;
    const cae_config *c = &e->cfg;
    size_t N = (size_t)c->num_patches, D = (size_t)c->embed_dim;
    size_t S = (size_t)c->input_size;
    cae_block_dims dims = {n, N + 1, D, (size_t)c->num_heads, (size_t)c->mlp_hidden};

    if (n == 0)
        return 0;
    if (n > e->B) {
        cae_errorf("internal error: %zu images for an encoder planned for %zu", n, e->B);
        return -1;
    }
    CAE_TRY(cae_write(ctx, e->samples, images, n * 3 * S * S * 4));
    cae_patch_embed_bufs eb = embed_bufs(e);
    CAE_TRY(cae_patch_embed_forward(ctx, c, &eb, e->cls_token, e->patch_w, e->patch_b, e->stream,
                                    n));
    /* in place: a block reads its input only before writing its output */
    for (int i = 0; i < c->depth; i++)
        CAE_TRY(cae_block_forward(ctx, &e->blocks[i], &e->acts, e->stream, e->stream, &dims,
                                  cae_buf_null(), cae_buf_null()));
    if (pool == CAE_POOL_TOKENS_PRENORM)
        return cae_read(ctx, features, e->stream, n * (N + 1) * D * 4);
    CAE_TRY(cae_layernorm_forward(ctx, e->out, e->out_mean, e->out_rstd, e->stream, e->norm.w,
                                  e->norm.b, n * (N + 1), D));
    if (pool == CAE_POOL_TOKENS)
        return cae_read(ctx, features, e->out, n * (N + 1) * D * 4);
    if (pool == CAE_POOL_CLS) {
        CAE_TRY(cae_copy_blocks(ctx, e->pooled, D, e->out, (N + 1) * D, n, D, CAE_OVERWRITE));
    } else {
        /* mean of the patch tokens: a colsum per image, then a scale */
        CAE_TRY(cae_fill_zero(ctx, e->pooled, n * D));
        for (size_t b = 0; b < n; b++)
            CAE_TRY(cae_colsum_add(ctx, cae_buf_at(e->pooled, b * D),
                                   cae_buf_at(e->out, b * (N + 1) * D + D), N, D));
        CAE_TRY(cae_scale(ctx, e->pooled, (float)(1.0 / (double)N), n * D));
    }
    return cae_read(ctx, features, e->pooled, n * D * 4);
}

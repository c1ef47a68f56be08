/* encoder_eval.c: the frozen encoder of the evaluation programs (see
 * encoder_eval.h). */
#include "eval/encoder_eval.h"

#include "ops/ops.h"
#include "safetensors/safetensors.h"

#include <stdlib.h>
#include <string.h>

/* a sequential planner over one buffer: each request 16-element aligned,
 * its buffer set once the whole is allocated */
typedef struct {
    size_t used, n;
    cae_buf *slot[32];
} one_buffer;

static int take(void *user, cae_buf *slot, size_t elems)
{
    one_buffer *b = user;
    if (b->n == sizeof b->slot / sizeof *b->slot) {
        cae_errorf("internal error: more activations than the evaluation encoder plans");
        return -1;
    }
    b->used = (b->used + 15) / 16 * 16;
    slot->off = b->used;
    b->used += elems ? elems : 1;
    b->slot[b->n++] = slot;
    return 0;
}

static int alloc_buf(cae_ctx *ctx, cl_mem *mem, cae_buf *b, size_t elems)
{
    CAE_TRY(cae_alloc(ctx, (elems ? elems : 1) * 4, mem));
    b->mem = *mem;
    b->off = 0;
    return 0;
}

static int views(cae_encoder_eval *e)
{
    CAE_TRY(cae_encoder_view(&e->w, &e->table, &e->params, "encoder.", e->cfg.depth));
    e->norm.w = cae_params_view(&e->table, &e->params, "encoder.norm.weight");
    e->norm.b = cae_params_view(&e->table, &e->params, "encoder.norm.bias");
    return 0;
}

/* the inputs get buffers of their own; the rest share one */
static int plan(cae_encoder_eval *e)
{
    cae_ctx *ctx = e->ctx;
    const cae_config *c = &e->cfg;
    size_t B = e->B, N = (size_t)c->num_patches, D = (size_t)c->embed_dim, T = B * (N + 1);
    size_t S = (size_t)c->input_size;
    one_buffer b = {0};
    cae_planner p = {take, &b, ctx, 0};

    if (alloc_buf(ctx, &e->samples_mem, &e->samples, B * 3 * S * S) != 0 ||
        alloc_buf(ctx, &e->idx_mem, &e->enc.idx, B * N) != 0)
        return -1;
    cae_plan_take(&p, &e->pos, (N + 1) * D);
    CAE_TRY(cae_encoder_plan(&e->enc, &p, c, B, N, 1));
    cae_plan_take(&p, &e->out, T * D);
    cae_plan_take(&p, &e->out_mean, T);
    cae_plan_take(&p, &e->out_rstd, T);
    cae_plan_take(&p, &e->pooled, B * D);
    if (p.failed)
        return -1;
    if ((double)b.used * 4 > (double)ctx->max_alloc) {
        cae_errorf("the evaluation encoder needs %.0f MiB of activations in one buffer for "
                   "batch %zu, more than %s allows (%.0f MiB); reduce --batch_size",
                   (double)b.used * 4 / 1048576.0, B, ctx->device_name,
                   (double)ctx->max_alloc / 1048576.0);
        return -1;
    }
    CAE_TRY(cae_alloc(ctx, b.used * 4, &e->act_mem));
    for (size_t i = 0; i < b.n; i++)
        b.slot[i]->mem = e->act_mem;
    return 0;
}

int cae_encoder_eval_init(cae_encoder_eval *e, cae_ctx *ctx, const cae_config *cfg, size_t batch)
{
    CAE_TRY(cae_mha_check(ctx));
    memset(e, 0, sizeof *e);
    e->ctx = ctx;
    e->cfg = *cfg;
    e->B = batch;
    if (batch == 0) {
        cae_errorf("--batch_size 0: must be positive");
        return -1;
    }
    if (cae_params_build(&e->table, cfg, cae_params_chunk_limit(ctx)) != 0)
        return -1;
    if (cae_arena_alloc(ctx, &e->table, &e->params) != 0 || views(e) != 0 || plan(e) != 0 ||
        cae_encoder_all_patches(ctx, &e->enc, batch) != 0 ||
        cae_pos_table_upload(ctx, e->pos, (size_t)cfg->grid, (size_t)cfg->embed_dim) != 0) {
        cae_encoder_eval_free(e);
        return -1;
    }
    return 0;
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
    cae_encoder_w_free(&e->w);
    cae_encoder_acts_free(&e->enc);
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
    cae_buf x;

    if (n == 0)
        return 0;
    if (n > e->B) {
        cae_errorf("internal error: %zu images for an encoder planned for %zu", n, e->B);
        return -1;
    }
    CAE_TRY(cae_write(ctx, e->samples, images, n * 3 * S * S * 4));
    CAE_TRY(cae_encoder_forward(ctx, &e->enc, e->samples, e->pos, &e->w, cae_buf_null(), c, n));
    x = cae_encoder_out(&e->enc, c);
    if (pool == CAE_POOL_TOKENS_PRENORM)
        return cae_read(ctx, features, x, n * (N + 1) * D * 4);
    CAE_TRY(cae_layernorm_forward(ctx, e->out, e->out_mean, e->out_rstd, x, e->norm.w, e->norm.b,
                                  n * (N + 1), D));
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

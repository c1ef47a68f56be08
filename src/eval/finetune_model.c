/* finetune_model.c: the encoder-classifier of fine-tuning (see
 * finetune_model.h): its table, memory, loading, forward and backward. */
#include "eval/finetune_model.h"

#include "eval/encoder_eval.h"

#include "ops/finetune.h"
#include "ops/ops.h"
#include "safetensors/safetensors.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- table */

/* The pretraining table's encoder.* entries under the fine-tuning keys
 * (prefix stripped, the final norm left out), then fc_norm and head. */
static int build_table(cae_param_table *t, const cae_config *cfg, size_t K, size_t limit)
{
    cae_param_table full;
    cae_config c = *cfg;
    int64_t D = cfg->embed_dim, vec[1] = {D}, hw[2] = {(int64_t)K, D}, hb[1] = {(int64_t)K};
    memset(&full, 0, sizeof full);
    memset(t, 0, sizeof *t);
    c.pixel_target = 1; /* only the encoder is used: no tokenizer-sized head */
    CAE_TRY(cae_params_build(&full, &c, limit));
    t->cap = full.n + 4;
    t->p = calloc(t->cap, sizeof *t->p);
    if (!t->p) {
        cae_params_free(&full);
        cae_errorf("out of host memory building the parameter table");
        return -1;
    }
    for (size_t i = 0; i < full.n; i++) {
        const cae_param *f = &full.p[i];
        cae_param *p;
        if (strncmp(f->name, "encoder.", 8) != 0 || strncmp(f->name, "encoder.norm.", 13) == 0)
            continue;
        p = &t->p[t->n++];
        *p = *f;
        memmove(p->name, p->name + 8, strlen(p->name + 8) + 1);
        /* model.no_weight_decay() = {pos_embed, cls_token} */
        if (strcmp(p->name, "cls_token") == 0)
            p->decay = 0;
    }
    cae_params_free(&full);
    CAE_TRY(cae_params_add(t, CAE_INIT_CONST, 1.0f, 1, vec, "fc_norm.weight"));
    CAE_TRY(cae_params_add(t, CAE_INIT_ZERO, 0, 1, vec, "fc_norm.bias"));
    CAE_TRY(cae_params_add(t, CAE_INIT_TRUNC_NORMAL, 0, 2, hw, "head.weight"));
    CAE_TRY(cae_params_add(t, CAE_INIT_ZERO, 0, 1, hb, "head.bias"));
    return cae_params_layout(t, limit);
}

/* ---------------------------------------------------------------- views */

static int weights_view(cae_ft_model *m, const cae_arena *a, cae_ft_weights *w)
{
    const cae_param_table *t = &m->table;
    char prefix[32];
    w->blocks = calloc((size_t)m->cfg.depth + 1, sizeof *w->blocks);
    if (!w->blocks) {
        cae_errorf("out of host memory");
        return -1;
    }
    w->cls_token = cae_params_view(t, a, "cls_token");
    w->patch_w = cae_params_view(t, a, "patch_embed.proj.weight");
    w->patch_b = cae_params_view(t, a, "patch_embed.proj.bias");
    for (int i = 0; i < m->cfg.depth; i++) {
        snprintf(prefix, sizeof prefix, "blocks.%d", i);
        cae_block_view(t, a, &w->blocks[i], prefix);
    }
    w->fc_norm.w = cae_params_view(t, a, "fc_norm.weight");
    w->fc_norm.b = cae_params_view(t, a, "fc_norm.bias");
    w->head.w = cae_params_view(t, a, "head.weight");
    w->head.b = cae_params_view(t, a, "head.bias");
    return 0;
}

/* ---------------------------------------------------------------- memory */

/* one device buffer per activation: no single allocation limit to meet */
static int act(cae_ft_model *m, cae_buf *slot, size_t elems)
{
    if (m->n_mem == m->cap_mem) {
        int cap = m->cap_mem ? 2 * m->cap_mem : 64;
        cl_mem *grown = realloc(m->mem, (size_t)cap * sizeof *grown);
        if (!grown) {
            cae_errorf("out of host memory");
            return -1;
        }
        m->mem = grown;
        m->cap_mem = cap;
    }
    elems = elems ? elems : 1;
    CAE_TRY(cae_alloc(m->ctx, elems * 4, &m->mem[m->n_mem]));
    slot->mem = m->mem[m->n_mem++];
    slot->off = 0;
    m->act_bytes += elems * 4;
    return 0;
}

static int plan(cae_ft_model *m)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, K = m->K, N = (size_t)c->num_patches, D = (size_t)c->embed_dim;
    size_t P = (size_t)c->patch_size, S = (size_t)c->input_size, H = (size_t)c->num_heads;
    size_t hid = (size_t)c->mlp_hidden, T = B * (N + 1), depth = (size_t)c->depth;
    cae_scratch *s = &m->s;
    cae_mha_dims md = {B, H, N + 1, N + 1, D / H, 1.0f}; /* sizes the attention core's buffers */

    m->stream = calloc(depth + 1, sizeof *m->stream);
    m->acts = calloc(depth + 1, sizeof *m->acts);
    if (!m->stream || !m->acts) {
        cae_errorf("out of host memory");
        return -1;
    }
    CAE_TRY(act(m, &m->samples, B * 3 * S * S));
    CAE_TRY(act(m, &m->idx, B * N));
    CAE_TRY(act(m, &m->targets, B * K));
    CAE_TRY(act(m, &m->drop_scale, depth * 2 * B));
    CAE_TRY(act(m, &m->pos, (N + 1) * D));
    CAE_TRY(act(m, &m->patches, B * N * 3 * P * P));
    CAE_TRY(act(m, &m->emb, B * N * D));
    CAE_TRY(act(m, &m->cls_rows, B * D));
    for (size_t i = 0; i <= depth; i++)
        CAE_TRY(act(m, &m->stream[i], T * D));
    for (size_t i = 0; i < depth; i++) {
        cae_block_acts *a = &m->acts[i];
        CAE_TRY(act(m, &a->ln1, T * D));
        CAE_TRY(act(m, &a->ln1_mean, T));
        CAE_TRY(act(m, &a->ln1_rstd, T));
        CAE_TRY(act(m, &a->qkv, T * 3 * D));
        CAE_TRY(act(m, &a->p, cae_mha_saved_elems(m->ctx, &md)));
        CAE_TRY(act(m, &a->merged, T * D));
        CAE_TRY(act(m, &a->attn, T * D));
        CAE_TRY(act(m, &a->x_mid, T * D));
        CAE_TRY(act(m, &a->ln2, T * D));
        CAE_TRY(act(m, &a->ln2_mean, T));
        CAE_TRY(act(m, &a->ln2_rstd, T));
        CAE_TRY(act(m, &a->h_pre, T * hid));
        CAE_TRY(act(m, &a->h_act, T * hid));
        CAE_TRY(act(m, &a->mlp, T * D));
    }
    CAE_TRY(act(m, &m->pooled, B * D));
    CAE_TRY(act(m, &m->normed, B * D));
    CAE_TRY(act(m, &m->norm_mean, B));
    CAE_TRY(act(m, &m->norm_rstd, B));
    CAE_TRY(act(m, &m->logits, B * K));
    CAE_TRY(act(m, &m->dlogits, B * K));
    CAE_TRY(act(m, &m->row_loss, B));
    CAE_TRY(act(m, &m->dnormed, B * D));
    CAE_TRY(act(m, &m->dpooled, B * D));
    CAE_TRY(act(m, &m->gstream, T * D));
    CAE_TRY(act(m, &s->d1, T * D));
    CAE_TRY(act(m, &s->d2, T * D));
    CAE_TRY(act(m, &s->d3, T * D));
    CAE_TRY(act(m, &s->dhidden, T * hid));
    CAE_TRY(act(m, &s->dhidden2, T * hid));
    CAE_TRY(act(m, &s->dqkv, T * 3 * D));
    CAE_TRY(act(m, &s->dp, cae_mha_scratch_elems(m->ctx, &md)));
    return 0;
}

static cae_patch_embed_bufs embed_bufs(const cae_ft_model *m)
{
    cae_patch_embed_bufs b = {m->samples, m->idx, m->pos, m->patches, m->emb, m->cls_rows};
    return b;
}

int cae_ft_init(cae_ft_model *m, cae_ctx *ctx, const cae_config *cfg, size_t K, size_t batch)
{
    cae_patch_embed_bufs eb;

    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->cfg = *cfg;
    m->B = batch;
    m->K = K;
    if (batch == 0 || K == 0) {
        cae_errorf("%s 0: must be positive", batch == 0 ? "--batch_size" : "--nb_classes");
        return -1;
    }
    if (build_table(&m->table, cfg, K, cae_params_chunk_limit(ctx)) != 0 ||
        cae_arena_alloc(ctx, &m->table, &m->params) != 0 ||
        cae_arena_alloc(ctx, &m->table, &m->grads) != 0 ||
        weights_view(m, &m->params, &m->W) != 0 || weights_view(m, &m->grads, &m->G) != 0 ||
        plan(m) != 0)
        goto fail;
    eb = embed_bufs(m);
    if (cae_patch_embed_upload(ctx, cfg, &eb, batch) != 0)
        goto fail;
    return 0;
fail:
    cae_ft_free(m);
    return -1;
}

void cae_ft_free(cae_ft_model *m)
{
    if (!m->ctx)
        return;
    for (int i = 0; i < m->n_mem; i++)
        cae_release(&m->mem[i]);
    free(m->mem);
    free(m->stream);
    free(m->acts);
    free(m->W.blocks);
    free(m->G.blocks);
    cae_arena_free(&m->params);
    cae_arena_free(&m->grads);
    cae_params_free(&m->table);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- loading */

static void list_names(FILE *out, const char *what, const char **names, size_t n)
{
    if (!out)
        return;
    fprintf(out, "%s: [", what);
    for (size_t i = 0; i < n && i < 12; i++)
        fprintf(out, "%s'%s'", i ? ", " : "", names[i]);
    if (n > 12)
        fprintf(out, ", ... (%zu in all)", n);
    fprintf(out, "]\n");
}

static int load_file(cae_ft_model *m, const char *path, FILE *report)
{
    const cae_param_table *t = &m->table;
    cae_st_file f;
    float **image = NULL;
    unsigned char *loaded = NULL;
    const char **missing = NULL, **unused = NULL;
    size_t n_loaded = 0, n_missing = 0, n_unused = 0, n_optim = 0;
    int rc = -1;

    if (cae_st_read(&f, path) != 0)
        return -1;
    image = cae_arena_image_new(t);
    loaded = calloc(t->n + 1, 1);
    missing = calloc(t->n + 1, sizeof *missing);
    unused = calloc(f.n_tensors + 1, sizeof *unused);
    if (!image || !loaded || !missing || !unused) {
        cae_errorf("out of host memory");
        goto out;
    }
    /* the initialized weights, overwritten by the file's */
    if (cae_arena_read_image(m->ctx, t, &m->params, image) != 0)
        goto out;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const cae_st_tensor *st = &f.tensors[i];
        const char *key = strncmp(st->name, "encoder.", 8) == 0 ? st->name + 8 : st->name;
        const cae_param *p = cae_params_find(t, key);
        int same = p && st->dtype == CAE_DT_F32 && st->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = st->shape[d] == p->shape[d];
        if (!p) {
            if (strncmp(st->name, "optimizer.", 10) == 0)
                n_optim++;
            else
                unused[n_unused++] = st->name;
            continue;
        }
        if (!same) {
            if (strncmp(key, "head.", 5) == 0) { /* another task's head */
                if (report)
                    fprintf(report, "Removing key %s from pretrained checkpoint\n", st->name);
                continue;
            }
            cae_errorf("%s: tensor %s does not fit the model's %s (shape or dtype differ)", path,
                       st->name, p->name);
            goto out;
        }
        memcpy(image[p->chunk] + p->off, st->data, p->numel * 4);
        if (!loaded[p - t->p])
            n_loaded++;
        loaded[p - t->p] = 1;
    }
    if (n_loaded == 0) {
        cae_errorf("%s: none of the model's tensors (encoder.* or fine-tuning keys)", path);
        goto out;
    }
    for (size_t i = 0; i < t->n; i++)
        if (!loaded[i])
            missing[n_missing++] = t->p[i].name;
    if (report) {
        fprintf(report, "Load pre-trained checkpoint from: %s (%zu of %zu tensors)\n", path,
                n_loaded, t->n);
        list_names(report, "Weights of VisionTransformer not initialized from pretrained model",
                   missing, n_missing);
        list_names(report, "Weights from pretrained model not used in VisionTransformer", unused,
                   n_unused);
        if (n_optim)
            fprintf(report, "(and %zu optimizer state tensors)\n", n_optim);
    }
    rc = cae_arena_write_image(m->ctx, t, &m->params, image);
out:
    if (image)
        cae_arena_image_free(t, image);
    free(loaded);
    free(missing);
    free(unused);
    cae_st_free(&f);
    return rc;
}

int cae_ft_load(cae_ft_model *m, const char *finetune, uint64_t seed, double init_scale,
                FILE *report)
{
    /* cae_model_init_weights reads only ctx, table and params */
    cae_model shim;
    if (!finetune || !finetune[0]) {
        cae_errorf("--finetune: give a checkpoint, a weights .safetensors or 'random'");
        return -1;
    }
    memset(&shim, 0, sizeof shim);
    shim.ctx = m->ctx;
    shim.cfg = m->cfg;
    shim.table = m->table;
    shim.params = m->params;
    CAE_TRY(cae_model_init_weights(&shim, seed));
    /* self.head.weight.data.mul_(init_scale); self.head.bias likewise */
    CAE_TRY(cae_scale(m->ctx, m->W.head.w, (float)init_scale, m->K * (size_t)m->cfg.embed_dim));
    CAE_TRY(cae_scale(m->ctx, m->W.head.b, (float)init_scale, m->K));
    if (strcmp(finetune, "random") == 0)
        return 0;
    return load_file(m, finetune, report);
}

/* ---------------------------------------------------------------- step */

static void drops(const cae_ft_model *m, int i, int train, cae_buf *d1, cae_buf *d2)
{
    if (!train || !m->use_drop_path) {
        *d1 = *d2 = cae_buf_null();
        return;
    }
    *d1 = cae_buf_at(m->drop_scale, (size_t)i * 2 * m->B);
    *d2 = cae_buf_at(m->drop_scale, (size_t)i * 2 * m->B + m->B);
}

static int forward(cae_ft_model *m, const float *images, size_t n, int train)
{
    cae_patch_embed_bufs eb;
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t N = (size_t)c->num_patches, D = (size_t)c->embed_dim;
    size_t S = (size_t)c->input_size;
    cae_block_dims dims = {n, N + 1, D, (size_t)c->num_heads, (size_t)c->mlp_hidden};

    if (n == 0 || n > m->B) {
        cae_errorf("internal error: %zu images for a model planned for %zu", n, m->B);
        return -1;
    }
    CAE_TRY(cae_write(ctx, m->samples, images, n * 3 * S * S * 4));
    eb = embed_bufs(m);
    CAE_TRY(cae_patch_embed_forward(ctx, c, &eb, m->W.cls_token, m->W.patch_w, m->W.patch_b,
                                    m->stream[0], n));
    for (int i = 0; i < c->depth; i++) {
        cae_buf d1, d2;
        drops(m, i, train, &d1, &d2);
        CAE_TRY(cae_block_forward(ctx, &m->W.blocks[i], &m->acts[i], m->stream[i + 1],
                                  m->stream[i], &dims, d1, d2));
    }
    CAE_TRY(cae_mean_pool_forward(ctx, m->pooled, m->stream[c->depth], n, N, D));
    CAE_TRY(cae_layernorm_forward(ctx, m->normed, m->norm_mean, m->norm_rstd, m->pooled,
                                  m->W.fc_norm.w, m->W.fc_norm.b, n, D));
    return cae_linear_forward(ctx, m->logits, m->normed, m->W.head.w, m->W.head.b, n, D, m->K);
}

int cae_ft_logits(cae_ft_model *m, const float *images, size_t n, float *logits)
{
    if (n == 0)
        return 0;
    CAE_TRY(forward(m, images, n, 0));
    return cae_read(m->ctx, logits, m->logits, n * m->K * 4);
}

static int backward(cae_ft_model *m)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t B = m->B, K = m->K, N = (size_t)c->num_patches, D = (size_t)c->embed_dim;
    size_t P = (size_t)c->patch_size;
    cae_block_dims dims = {B, N + 1, D, (size_t)c->num_heads, (size_t)c->mlp_hidden};

    CAE_TRY(cae_arena_zero(ctx, &m->table, &m->grads));
    CAE_TRY(cae_linear_backward(ctx, m->dnormed, m->G.head.w, m->G.head.b, m->dlogits, m->normed,
                                m->W.head.w, B, D, K, CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, m->dpooled, m->G.fc_norm.w, m->G.fc_norm.b, m->dnormed,
                                   m->pooled, m->W.fc_norm.w, m->norm_mean, m->norm_rstd, B, D,
                                   CAE_OVERWRITE));
    CAE_TRY(cae_mean_pool_backward(ctx, m->gstream, m->dpooled, B, N, D));
    for (int i = c->depth - 1; i >= 0; i--) {
        cae_buf d1, d2;
        drops(m, i, 1, &d1, &d2);
        CAE_TRY(cae_block_backward(ctx, &m->W.blocks[i], &m->G.blocks[i], &m->acts[i], m->gstream,
                                   m->stream[i], &dims, d1, d2, &m->s));
    }
    /* cls token: row 0 of every sample */
    CAE_TRY(cae_copy_blocks(ctx, m->s.d1, D, m->gstream, (N + 1) * D, B, D, CAE_OVERWRITE));
    CAE_TRY(cae_colsum_add(ctx, m->G.cls_token, m->s.d1, B, D));
    /* patch embedding (positions are fixed) */
    CAE_TRY(cae_copy_blocks(ctx, m->s.d2, N * D, cae_buf_at(m->gstream, D), (N + 1) * D, B, N * D,
                            CAE_OVERWRITE));
    return cae_linear_backward(ctx, cae_buf_null(), m->G.patch_w, m->G.patch_b, m->s.d2,
                               m->patches, m->W.patch_w, B * N, 3 * P * P, D, CAE_OVERWRITE);
}

int cae_ft_train_step(cae_ft_model *m, const float *images, const float *targets,
                      uint64_t seed, uint64_t step, double *loss)
{
    cae_ctx *ctx = m->ctx;
    size_t B = m->B, K = m->K;
    float *rows;
    double s = 0;
    int rc;

    m->use_drop_path = m->cfg.drop_path > 0;
    if (m->use_drop_path) {
        size_t n = (size_t)m->cfg.depth * 2 * B;
        float *d = malloc((n ? n : 1) * sizeof *d);
        if (!d) {
            cae_errorf("out of host memory");
            return -1;
        }
        cae_drop_path_fill(d, &m->cfg.depth, 1, B, m->cfg.drop_path, seed, step);
        rc = cae_write(ctx, m->drop_scale, d, n * 4);
        free(d);
        CAE_TRY(rc);
    }
    CAE_TRY(cae_write(ctx, m->targets, targets, B * K * 4));
    CAE_TRY(forward(m, images, B, 1));
    CAE_TRY(cae_soft_cross_entropy(ctx, m->dlogits, m->row_loss, m->logits, m->targets,
                                   (float)(1.0 / (double)B), B, K));
    CAE_TRY(backward(m));
    rows = malloc(B * sizeof *rows);
    if (!rows) {
        cae_errorf("out of host memory");
        return -1;
    }
    rc = cae_read(ctx, rows, m->row_loss, B * 4);
    for (size_t i = 0; rc == 0 && i < B; i++)
        s += rows[i];
    free(rows);
    *loss = s / (double)B;
    return rc;
}

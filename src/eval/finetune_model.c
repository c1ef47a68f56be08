/* finetune_model.c: the encoder-classifier of fine-tuning (see
 * finetune_model.h): its table, memory, loading, forward and backward. */
#include "eval/finetune_model.h"

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
    CAE_TRY(cae_encoder_view(&w->enc, t, a, "", m->cfg.depth));
    w->fc_norm.w = cae_params_view(t, a, "fc_norm.weight");
    w->fc_norm.b = cae_params_view(t, a, "fc_norm.bias");
    w->head.w = cae_params_view(t, a, "head.weight");
    w->head.b = cae_params_view(t, a, "head.bias");
    return 0;
}

/* ---------------------------------------------------------------- memory */

/* one device buffer per activation: no single allocation limit to meet */
static int act(void *user, cae_buf *slot, size_t elems)
{
    cae_ft_model *m = user;
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
    size_t S = (size_t)c->input_size, H = (size_t)c->num_heads;
    size_t hid = (size_t)c->mlp_hidden, T = B * (N + 1), depth = (size_t)c->depth;
    cae_scratch *s = &m->s;
    cae_mha_dims md = {B, H, N + 1, N + 1, D / H, 1.0f}; /* sizes the attention core's buffers */
    cae_planner p = {act, m, m->ctx, 0};

    cae_plan_take(&p, &m->samples, B * 3 * S * S);
    cae_plan_take(&p, &m->enc.idx, B * N);
    cae_plan_take(&p, &m->targets, B * K);
    cae_plan_take(&p, &m->drop_scale, depth * 2 * B);
    cae_plan_take(&p, &m->pos, (N + 1) * D);
    CAE_TRY(cae_encoder_plan(&m->enc, &p, c, B, N, 0));
    cae_plan_take(&p, &m->pooled, B * D);
    cae_plan_take(&p, &m->normed, B * D);
    cae_plan_take(&p, &m->norm_mean, B);
    cae_plan_take(&p, &m->norm_rstd, B);
    cae_plan_take(&p, &m->logits, B * K);
    cae_plan_take(&p, &m->dlogits, B * K);
    cae_plan_take(&p, &m->row_loss, B);
    cae_plan_take(&p, &m->dnormed, B * D);
    cae_plan_take(&p, &m->dpooled, B * D);
    cae_plan_take(&p, &m->gstream, T * D);
    cae_plan_take(&p, &s->d1, T * D);
    cae_plan_take(&p, &s->d2, T * D);
    cae_plan_take(&p, &s->d3, T * D);
    cae_plan_take(&p, &s->dhidden, T * hid);
    cae_plan_take(&p, &s->dhidden2, T * hid);
    cae_plan_take(&p, &s->dqkv, T * 3 * D);
    cae_plan_take(&p, &s->dp, cae_mha_scratch_elems(m->ctx, &md));
    return p.failed ? -1 : 0;
}

int cae_ft_init(cae_ft_model *m, cae_ctx *ctx, const cae_config *cfg, size_t K, size_t batch)
{
    CAE_TRY(cae_mha_check(ctx));
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
        plan(m) != 0 || cae_encoder_all_patches(ctx, &m->enc, batch) != 0 ||
        cae_pos_table_upload(ctx, m->pos, (size_t)cfg->grid, (size_t)cfg->embed_dim) != 0) {
        cae_ft_free(m);
        return -1;
    }
    return 0;
}

void cae_ft_free(cae_ft_model *m)
{
    if (!m->ctx)
        return;
    for (int i = 0; i < m->n_mem; i++)
        cae_release(&m->mem[i]);
    free(m->mem);
    cae_encoder_acts_free(&m->enc);
    cae_encoder_w_free(&m->W.enc);
    cae_encoder_w_free(&m->G.enc);
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

/* the drop-path scales [depth,2,B] of this step; null in evaluation mode */
static cae_buf drops(const cae_ft_model *m, int train)
{
    return train && m->use_drop_path ? m->drop_scale : cae_buf_null();
}

static int forward(cae_ft_model *m, const float *images, size_t n, int train)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t N = (size_t)c->num_patches, D = (size_t)c->embed_dim;
    size_t S = (size_t)c->input_size;

    if (n == 0 || n > m->B) {
        cae_errorf("internal error: %zu images for a model planned for %zu", n, m->B);
        return -1;
    }
    CAE_TRY(cae_write(ctx, m->samples, images, n * 3 * S * S * 4));
    CAE_TRY(cae_encoder_forward(ctx, &m->enc, m->samples, m->pos, &m->W.enc, drops(m, train), c,
                                n));
    CAE_TRY(cae_mean_pool_forward(ctx, m->pooled, cae_encoder_out(&m->enc, c), n, N, D));
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

    CAE_TRY(cae_arena_zero(ctx, &m->table, &m->grads));
    CAE_TRY(cae_linear_backward(ctx, m->dnormed, m->G.head.w, m->G.head.b, m->dlogits, m->normed,
                                m->W.head.w, B, D, K, CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, m->dpooled, m->G.fc_norm.w, m->G.fc_norm.b, m->dnormed,
                                   m->pooled, m->W.fc_norm.w, m->norm_mean, m->norm_rstd, B, D,
                                   CAE_OVERWRITE));
    CAE_TRY(cae_mean_pool_backward(ctx, m->gstream, m->dpooled, B, N, D));
    return cae_encoder_backward(ctx, &m->G.enc, m->gstream, &m->enc, &m->W.enc, drops(m, 1),
                                &m->s, c, B, NULL);
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
    if (m->use_drop_path)
        CAE_TRY(cae_drop_path_upload(ctx, m->drop_scale, &m->cfg.depth, 1, B, m->cfg.drop_path,
                                     seed, step));
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

/* model_plan.c: the model's memory, planned once per (batch, config):
 * weight views into the parameter and gradient arenas, every saved
 * activation and backward scratch tensor, placed in as few device buffers as
 * the device's allocation limit allows. Also the batch upload and the
 * official initialization. */
#include "model/model.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- planner */

typedef struct {
    cae_buf **slot;
    size_t *elems;
    unsigned char *own; /* 1: a buffer of its own (host-written inputs) */
    size_t n, cap;
    int failed;
    cae_ctx *ctx; /* sizes what the attention core saves (and so resolves it) */
} planner;

static void take_as(planner *p, cae_buf *slot, size_t elems, int own)
{
    if (p->failed)
        return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 512;
        cae_buf **s = realloc(p->slot, cap * sizeof *s);
        size_t *e = s ? realloc(p->elems, cap * sizeof *e) : NULL;
        unsigned char *o = e ? realloc(p->own, cap * sizeof *o) : NULL;
        if (s)
            p->slot = s;
        if (e)
            p->elems = e;
        if (!o) {
            p->failed = 1;
            return;
        }
        p->own = o;
        p->cap = cap;
    }
    p->slot[p->n] = slot;
    p->own[p->n] = (unsigned char)own;
    p->elems[p->n++] = elems ? elems : 1;
}

static void take(planner *p, cae_buf *slot, size_t elems)
{
    take_as(p, slot, elems, 0);
}

/* Inputs the host writes get a buffer each, written whole: oclgrind 21.10
 * loses track of initialized bytes when a write lands inside a buffer that
 * was already written, which would hide real reports among false ones. */
static void take_input(planner *p, cae_buf *slot, size_t elems)
{
    take_as(p, slot, elems, 1);
}

/* the planner as the blocks and the encoder see it */
static int take_shared(void *user, cae_buf *slot, size_t elems)
{
    planner *p = user;
    take(p, slot, elems);
    return p->failed ? -1 : 0;
}

/* Lay the requests out in buffers of at most limit bytes and allocate. */
static int commit(planner *p, cae_model *m, size_t limit_bytes)
{
    size_t limit = limit_bytes / 4, used = 0;
    size_t *chunk_elems = NULL;
    int *chunk_of = NULL, n = 1, rc = -1;
    size_t *off = NULL;

    if (p->failed) {
        cae_errorf("out of host memory planning activations");
        return -1;
    }
    chunk_elems = calloc(p->n + 1, sizeof *chunk_elems);
    chunk_of = calloc(p->n + 1, sizeof *chunk_of);
    off = calloc(p->n + 1, sizeof *off);
    if (!chunk_elems || !chunk_of || !off)
        goto out;
    for (size_t i = 0; i < p->n; i++) {
        size_t start = (used + 15) / 16 * 16;
        if (p->own[i])
            continue;
        if (p->elems[i] > limit) {
            cae_errorf("an activation of %zu bytes exceeds the device's largest allocation (%zu bytes); "
                       "reduce --batch_size", p->elems[i] * 4, limit_bytes);
            goto out;
        }
        if (start + p->elems[i] > limit) {
            chunk_elems[n - 1] = used;
            n++;
            start = 0;
        }
        chunk_of[i] = n - 1;
        off[i] = start;
        used = start + p->elems[i];
    }
    chunk_elems[n - 1] = used;
    m->act_mem = calloc((size_t)n + p->n, sizeof *m->act_mem);
    if (!m->act_mem)
        goto out;
    for (int c = 0; c < n; c++) {
        if (cae_alloc(m->ctx, chunk_elems[c] * 4, &m->act_mem[c]) != 0)
            goto out;
        m->n_act_mem++;
        m->act_bytes += chunk_elems[c] * 4;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->own[i]) {
            cl_mem *mem = &m->act_mem[m->n_act_mem];
            if (cae_alloc(m->ctx, p->elems[i] * 4, mem) != 0)
                goto out;
            m->n_act_mem++;
            m->act_bytes += p->elems[i] * 4;
            p->slot[i]->mem = *mem;
            p->slot[i]->off = 0;
            continue;
        }
        p->slot[i]->mem = m->act_mem[chunk_of[i]];
        p->slot[i]->off = off[i];
    }
    rc = 0;
out:
    free(chunk_elems);
    free(chunk_of);
    free(off);
    return rc;
}

/* ---------------------------------------------------------------- weights */

static cae_buf view_or_null(const cae_model *m, const cae_arena *a, const char *name)
{
    if (!cae_params_find(&m->table, name))
        return cae_buf_null();
    return cae_params_view(&m->table, a, name);
}

#define VIEW(name) cae_params_view(&m->table, a, name)

/* "prefix.name"; names come from the table's own patterns, so one that
 * does not fit is a bug */
static const char *join(char *buf, size_t size, const char *prefix, const char *name)
{
    if (snprintf(buf, size, "%s.%s", prefix, name) >= (int)size)
        abort();
    return buf;
}

static void lin_view(const cae_model *m, const cae_arena *a, cae_lin_w *l, const char *prefix)
{
    char n[CAE_PARAM_NAME_MAX + 16];
    l->w = VIEW(join(n, sizeof n, prefix, "weight"));
    l->b = view_or_null(m, a, join(n, sizeof n, prefix, "bias"));
}

static void rblock_view(const cae_model *m, const cae_arena *a, cae_rblock_w *b, const char *p)
{
    char n[CAE_PARAM_NAME_MAX + 16];
#define SUB(s) join(n, sizeof n, p, s)
    lin_view(m, a, &b->norm_q, SUB("norm1_q"));
    lin_view(m, a, &b->norm_k, SUB("norm1_k"));
    lin_view(m, a, &b->norm_v, SUB("norm1_v"));
    lin_view(m, a, &b->norm2, SUB("norm2_cross"));
    b->q_w = VIEW(SUB("cross_attn.q.weight"));
    b->k_w = VIEW(SUB("cross_attn.k.weight"));
    b->v_w = VIEW(SUB("cross_attn.v.weight"));
    b->q_bias = VIEW(SUB("cross_attn.q_bias"));
    b->v_bias = VIEW(SUB("cross_attn.v_bias"));
    lin_view(m, a, &b->proj, SUB("cross_attn.proj"));
    lin_view(m, a, &b->fc1, SUB("mlp_cross.fc1"));
    lin_view(m, a, &b->fc2, SUB("mlp_cross.fc2"));
    /* absent when frozen ones (decoder layer scale 0) */
    b->gamma1 = view_or_null(m, a, SUB("gamma_1_cross"));
    b->gamma2 = view_or_null(m, a, SUB("gamma_2_cross"));
#undef SUB
}

static int weights_view(cae_model *m, const cae_arena *a, cae_weights *w)
{
    const cae_config *c = &m->cfg;
    char p[CAE_PARAM_NAME_MAX];
    w->reg = calloc((size_t)c->regressor_depth + 1, sizeof *w->reg);
    w->dec = calloc((size_t)c->decoder_depth + 1, sizeof *w->dec);
    if (!w->reg || !w->dec) {
        cae_errorf("out of host memory");
        return -1;
    }
    CAE_TRY(cae_encoder_view(&w->enc, &m->table, a, "encoder.", c->depth));
    lin_view(m, a, &w->enc_norm, "encoder.norm");
    if (c->decoder_embed_dim != c->embed_dim) {
        lin_view(m, a, &w->proj, "encoder_to_regresser");
        lin_view(m, a, &w->proj_norm, "encoder_to_regresser_norm");
    }
    w->mask_token = VIEW("mask_token");
    for (int i = 0; i < c->regressor_depth; i++) {
        snprintf(p, sizeof p, "regresser.regressor_blocks.%d", i);
        rblock_view(m, a, &w->reg[i], p);
    }
    lin_view(m, a, &w->reg_norm, "regresser.norm");
    for (int i = 0; i < c->decoder_depth; i++) {
        snprintf(p, sizeof p, "decoder.decoder_blocks.%d", i);
        cae_block_view(&m->table, a, &w->dec[i], p);
    }
    lin_view(m, a, &w->dec_norm, "decoder.norm");
    lin_view(m, a, &w->head, "decoder.head");
    return 0;
}
#undef VIEW

/* ---------------------------------------------------------------- activations */

static int plan_encoder(planner *p, cae_planner *shared, cae_encoder_pass *e, const cae_config *c,
                        size_t B, size_t J)
{
    size_t D = (size_t)c->embed_dim, Dd = (size_t)c->decoder_embed_dim, T = B * (J + 1);
    take_input(p, &e->acts.idx, B * J);
    CAE_TRY(cae_encoder_plan(&e->acts, shared, c, B, J, 0));
    take(p, &e->out, T * D);
    take(p, &e->out_mean, T);
    take(p, &e->out_rstd, T);
    if (Dd != D) {
        take(p, &e->proj, T * Dd);
        take(p, &e->proj_ln, T * Dd);
        take(p, &e->proj_mean, T);
        take(p, &e->proj_rstd, T);
    }
    return 0;
}

static size_t max2(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* host-written inputs and the fixed position tables */
static void plan_inputs(cae_model *m, planner *p)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, N = (size_t)c->num_patches, M = (size_t)c->num_mask_patches;
    size_t D = (size_t)c->embed_dim, Dd = (size_t)c->decoder_embed_dim;
    size_t S = (size_t)c->input_size;
    /* encoder, regressor, decoder and alignment blocks, 2 branches each */
    size_t n_drop = (size_t)(2 * c->depth + c->regressor_depth + c->decoder_depth) * 2 * B;

    take_input(p, &m->samples, B * 3 * S * S);
    take_input(p, &m->labels, B * M);
    take_input(p, &m->pos_enc, (N + 1) * D);
    take_input(p, &m->pos_dec, (N + 1) * Dd);
    take_input(p, &m->drop_scale, n_drop);
}

/* regressor and decoder: streams and blocks, the final LNs, the head */
static int plan_heads(cae_model *m, planner *p, cae_planner *shared)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, M = (size_t)c->num_mask_patches, V = (size_t)c->num_visible;
    size_t Dd = (size_t)c->decoder_embed_dim, K = (size_t)c->decoder_num_classes;
    size_t H = (size_t)c->decoder_num_heads, hid = (size_t)c->decoder_mlp_hidden;
    cae_rblock_dims rd = {B, V, M, Dd, H, hid};
    cae_block_dims dd = {B, M, Dd, H, hid};

    m->rstream = calloc((size_t)c->regressor_depth + 1, sizeof *m->rstream);
    m->rblocks = calloc((size_t)c->regressor_depth + 1, sizeof *m->rblocks);
    m->dstream = calloc((size_t)c->decoder_depth + 1, sizeof *m->dstream);
    m->dblocks = calloc((size_t)c->decoder_depth + 1, sizeof *m->dblocks);
    if (!m->rstream || !m->rblocks || !m->dstream || !m->dblocks)
        return -1;
    for (int i = 0; i <= c->regressor_depth; i++)
        take(p, &m->rstream[i], B * M * Dd);
    for (int i = 0; i < c->regressor_depth; i++)
        cae_rblock_plan(shared, &m->rblocks[i], &rd);
    take(p, &m->latent_pred, B * M * Dd);
    take(p, &m->lp_mean, B * M);
    take(p, &m->lp_rstd, B * M);
    for (int i = 0; i <= c->decoder_depth; i++)
        take(p, &m->dstream[i], B * M * Dd);
    for (int i = 0; i < c->decoder_depth; i++)
        cae_block_plan(shared, &m->dblocks[i], &dd);
    take(p, &m->dec_out, B * M * Dd);
    take(p, &m->dec_mean, B * M);
    take(p, &m->dec_rstd, B * M);
    take(p, &m->logits, B * M * K);
    return 0;
}

static void plan_loss(cae_model *m, planner *p)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, M = (size_t)c->num_mask_patches;
    size_t Dd = (size_t)c->decoder_embed_dim, K = (size_t)c->decoder_num_classes;

    take(p, &m->dlogits, B * M * K);
    take(p, &m->row_loss, B * M);
    take(p, &m->row_correct, B * M);
    take(p, &m->sq, B * M * max2(Dd, K));
    if (c->pixel_target) {
        take(p, &m->pix_raw, B * M * K);
        take(p, &m->pix_target, B * M * K);
        take(p, &m->pix_mean, B * M);
        take(p, &m->pix_rstd, B * M);
        take_input(p, &m->pix_ones, K);
        take_input(p, &m->pix_zeros, K);
    }
    take(p, &m->sums, 4);
    take(p, &m->reduce_scratch, cae_reduce_scratch_elems(max2(B * M * max2(Dd, K), B * M)));
}

static void plan_backward(cae_model *m, planner *p)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, N = (size_t)c->num_patches, M = (size_t)c->num_mask_patches;
    size_t V = (size_t)c->num_visible, D = (size_t)c->embed_dim, Dd = (size_t)c->decoder_embed_dim;
    size_t rows = B * (N + 1), width = max2(D, Dd);
    size_t heads = max2((size_t)c->num_heads, (size_t)c->decoder_num_heads);
    size_t hid = max2((size_t)c->mlp_hidden, (size_t)c->decoder_mlp_hidden);
    /* the largest attention problem: every token of a sample */
    cae_mha_dims md = {B, heads, N + 1, N + 1, 1, 1.0f};

    take(p, &m->g_stream_enc, B * (V + 1) * D);
    take(p, &m->g_stream_dec, B * M * Dd);
    take(p, &m->g_q, B * M * Dd);
    take(p, &m->g_z, B * V * Dd);
    take(p, &m->g_zall, B * (V + 1) * Dd);
    take(p, &m->g_kv, B * N * Dd);
    take(p, &m->g_latent, B * M * Dd);
    take(p, &m->g_proj, B * (V + 1) * Dd);
    take(p, &m->s.d1, rows * width);
    take(p, &m->s.d2, rows * width);
    take(p, &m->s.d3, rows * width);
    take(p, &m->s.dhidden, rows * hid);
    take(p, &m->s.dhidden2, rows * hid);
    take(p, &m->s.dqkv, rows * 3 * width);
    take(p, &m->s.dqh, rows * width);
    take(p, &m->s.dkh, rows * width);
    take(p, &m->s.dvh, rows * width);
    take(p, &m->s.dp, cae_mha_scratch_elems(p->ctx, &md));
}

static int plan_all(cae_model *m, planner *p)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, M = (size_t)c->num_mask_patches, V = (size_t)c->num_visible;
    size_t N = (size_t)c->num_patches, Dd = (size_t)c->decoder_embed_dim;
    cae_planner shared = {take_shared, p, p->ctx, 0};

    plan_inputs(m, p);
    if (plan_encoder(p, &shared, &m->enc, c, B, V) != 0 ||
        plan_encoder(p, &shared, &m->align, c, B, M) != 0)
        return -1;
    take(p, &m->latent_target, B * M * Dd);
    take(p, &m->z, B * V * Dd);
    take(p, &m->p_vis, B * V * Dd);
    take(p, &m->p_mask, B * M * Dd);
    take(p, &m->pk, B * N * Dd);
    CAE_TRY(plan_heads(m, p, &shared));
    plan_loss(m, p);
    plan_backward(m, p);
    return 0;
}

static int upload_positions(cae_model *m)
{
    const cae_config *c = &m->cfg;
    CAE_TRY(cae_pos_table_upload(m->ctx, m->pos_enc, (size_t)c->grid, (size_t)c->embed_dim));
    return cae_pos_table_upload(m->ctx, m->pos_dec, (size_t)c->grid, (size_t)c->decoder_embed_dim);
}

int cae_model_init(cae_model *m, cae_ctx *ctx, const cae_config *cfg, size_t batch)
{
    planner p = {0};
    p.ctx = ctx;
    size_t limit = cae_params_chunk_limit(ctx);
    CAE_TRY(cae_mha_check(ctx));
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    m->cfg = *cfg;
    m->B = batch;
    if (cae_params_build(&m->table, cfg, limit) != 0)
        return -1;
    if (cae_arena_alloc(ctx, &m->table, &m->params) != 0 ||
        cae_arena_alloc(ctx, &m->table, &m->grads) != 0 ||
        weights_view(m, &m->params, &m->W) != 0 || weights_view(m, &m->grads, &m->G) != 0)
        goto fail;
    if (plan_all(m, &p) != 0) {
        cae_errorf("out of host memory planning activations");
        goto fail;
    }
    {
        /* say what the configuration needs before the device fails to give it */
        double need = 2.0 * (double)m->table.total * 4;
        for (size_t i = 0; i < p.n; i++)
            need += (double)p.elems[i] * 4;
        if (need > (double)ctx->global_mem) {
            cae_errorf("this configuration needs %.0f MiB of device memory for parameters, gradients "
                       "and activations (batch %zu) but %s has %.0f MiB; reduce --batch_size",
                       need / 1048576.0, batch, ctx->device_name,
                       (double)ctx->global_mem / 1048576.0);
            goto fail;
        }
    }
    if (commit(&p, m, limit) != 0 || upload_positions(m) != 0)
        goto fail;
    if (cfg->pixel_target &&
        (cae_fill_float(ctx, m->pix_ones, 1.0f, (size_t)cfg->decoder_num_classes) != 0 ||
         cae_fill_zero(ctx, m->pix_zeros, (size_t)cfg->decoder_num_classes) != 0))
        goto fail;
    free(p.slot);
    free(p.elems);
    free(p.own);
    return 0;
fail:
    free(p.slot);
    free(p.elems);
    free(p.own);
    cae_model_free(m);
    return -1;
}

static void free_weights(cae_weights *w)
{
    cae_encoder_w_free(&w->enc);
    free(w->reg);
    free(w->dec);
}

void cae_model_free(cae_model *m)
{
    for (int i = 0; i < m->n_act_mem; i++)
        cae_release(&m->act_mem[i]);
    free(m->act_mem);
    cae_encoder_acts_free(&m->enc.acts);
    cae_encoder_acts_free(&m->align.acts);
    free(m->rstream);
    free(m->rblocks);
    free(m->dstream);
    free(m->dblocks);
    free_weights(&m->W);
    free_weights(&m->G);
    cae_arena_free(&m->params);
    cae_arena_free(&m->grads);
    cae_params_free(&m->table);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- batch */

/* Indices of visible and masked patches in raster order; -1 (reported)
 * when a row does not mask exactly M patches. */
static int split_mask(const cae_model *m, const unsigned char *mask, int32_t *vis, int32_t *msk)
{
    const cae_config *c = &m->cfg;
    size_t N = (size_t)c->num_patches, M = (size_t)c->num_mask_patches, V = (size_t)c->num_visible;
    for (size_t b = 0; b < m->B; b++) {
        size_t nv = 0, nm = 0;
        for (size_t n = 0; n < N; n++) {
            if (mask[b * N + n]) {
                if (nm < M)
                    msk[b * M + nm] = (int32_t)n;
                nm++;
            } else {
                if (nv < V)
                    vis[b * V + nv] = (int32_t)n;
                nv++;
            }
        }
        if (nm != M) {
            cae_errorf("bool_masked_pos: sample %zu masks %zu patches, expected --num_mask_patches %zu",
                       b, nm, M);
            return -1;
        }
    }
    return 0;
}

int cae_model_set_inputs(cae_model *m, const float *samples, const unsigned char *mask)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, M = (size_t)c->num_mask_patches, V = (size_t)c->num_visible;
    size_t S = (size_t)c->input_size;
    int32_t *vis = malloc(B * V * sizeof *vis), *msk = malloc(B * M * sizeof *msk);
    int rc = -1;
    if (!vis || !msk)
        cae_errorf("out of host memory");
    else if (split_mask(m, mask, vis, msk) == 0 &&
             cae_write(m->ctx, m->samples, samples, B * 3 * S * S * 4) == 0 &&
             cae_write(m->ctx, m->enc.acts.idx, vis, B * V * 4) == 0 &&
             cae_write(m->ctx, m->align.acts.idx, msk, B * M * 4) == 0)
        rc = 0;
    free(vis);
    free(msk);
    return rc;
}

int cae_model_set_batch(cae_model *m, const float *samples, const unsigned char *mask,
                        const int32_t *labels)
{
    const cae_config *c = &m->cfg;
    size_t n = m->B * (size_t)c->num_mask_patches;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= c->decoder_num_classes) {
            cae_errorf("labels: entry %zu is %d, outside the vocabulary [0, %d)", i, (int)labels[i],
                       c->decoder_num_classes);
            return -1;
        }
    }
    CAE_TRY(cae_model_set_inputs(m, samples, mask));
    return cae_write(m->ctx, m->labels, labels, n * 4);
}

/* ---------------------------------------------------------------- drop path */

int cae_model_set_drop_path(cae_model *m, uint64_t seed, uint64_t step)
{
    const cae_config *c = &m->cfg;
    /* the alignment encoder runs in training mode too (its own draws) */
    int depths[4] = {c->depth, c->regressor_depth, c->decoder_depth, c->depth};
    m->use_drop_path = c->drop_path > 0;
    if (!m->use_drop_path)
        return 0;
    return cae_drop_path_upload(m->ctx, m->drop_scale, depths, 4, m->B, c->drop_path, seed, step);
}

/* ---------------------------------------------------------------- init */

/* xorshift-based normal draws for initialization, from a seed */
typedef struct {
    uint64_t s;
} init_rng;

static double uniform01(init_rng *r)
{
    r->s = cae_mix64(r->s);
    return ((double)(r->s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal(init_rng *r)
{
    double u1 = uniform01(r), u2 = uniform01(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int cae_model_init_weights(cae_model *m, uint64_t seed)
{
    init_rng r = {seed ^ 0x5eedULL};
    float **image = cae_arena_image_new(&m->table);
    int rc;
    if (!image)
        return -1;
    for (size_t i = 0; i < m->table.n; i++) {
        const cae_param *p = &m->table.p[i];
        float *h = image[p->chunk] + p->off;
        for (size_t k = 0; k < p->numel; k++) {
            double v = 0;
            switch (p->init) {
            case CAE_INIT_XAVIER: {
                double a = sqrt(6.0 / (double)(p->fan_in + p->fan_out));
                v = (2.0 * uniform01(&r) - 1.0) * a;
                break;
            }
            case CAE_INIT_TRUNC_NORMAL: /* std 0.02 cut at +-0.02: redraw outside */
                do
                    v = normal(&r);
                while (v < -1.0 || v > 1.0);
                v *= 0.02;
                break;
            case CAE_INIT_ZERO:
                v = 0;
                break;
            case CAE_INIT_CONST:
                v = p->init_value;
                break;
            }
            h[k] = (float)v;
        }
    }
    rc = cae_arena_write_image(m->ctx, &m->table, &m->params, image);
    cae_arena_image_free(&m->table, image);
    return rc;
}

/* cae_step.c: one CAE training step on the device, per src/model/DESIGN.md §1.
 *
 *   encoder(visible) -> [projection] -> z
 *   alignment: encoder(masked), same weights, no gradient -> latent_target
 *   regressor(mask tokens | z) -> LN -> latent_predict
 *   decoder(latent_predict + p_mask) -> LN -> head -> logits
 *   loss = CE(logits, labels) + align_loss_weight * MSE(latent_predict, latent_target)
 * then the backward pass into the gradient arena.
 */
#include "model/model.h"

#include "ops/ops.h"

/* The drop-path scales [depth,2,B] of a stack (0 encoder, 1 regressor, 2
 * decoder, 3 alignment encoder); null when drop path is off. */
static cae_buf stack_drops(const cae_model *m, int stack)
{
    const cae_config *c = &m->cfg;
    int base[4] = {0, c->depth, c->depth + c->regressor_depth,
                   c->depth + c->regressor_depth + c->decoder_depth};
    if (!m->use_drop_path)
        return cae_buf_null();
    return cae_buf_at(m->drop_scale, (size_t)base[stack] * 2 * m->B);
}

/* Tell the all-reduce that the tensors from `first_name` on (table order)
 * have their final gradients. */
static int grads_ready(cae_model *m, const char *fmt, int i)
{
    char name[CAE_PARAM_NAME_MAX];
    const cae_param *p;
    if (!m->grads_ready)
        return 0;
    snprintf(name, sizeof name, fmt, i);
    p = cae_params_find(&m->table, name);
    if (!p) {
        cae_errorf("internal error: no parameter %s", name);
        return -1;
    }
    return m->grads_ready(m->grads_ready_user, (size_t)(p - m->table.p));
}

/* The encoder over the J patches listed in e's idx, cls first; leaves the
 * final LN (and projection) output of all B*(J+1) tokens. */
static int encoder_forward(cae_model *m, cae_encoder_pass *e, int stack)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t T = m->B * (e->acts.J + 1), D = (size_t)c->embed_dim, Dd = (size_t)c->decoder_embed_dim;

    CAE_TRY(cae_encoder_forward(ctx, &e->acts, m->samples, m->pos_enc, &m->W.enc,
                                stack_drops(m, stack), c, m->B));
    CAE_TRY(cae_layernorm_forward(ctx, e->out, e->out_mean, e->out_rstd,
                                  cae_encoder_out(&e->acts, c), m->W.enc_norm.w, m->W.enc_norm.b,
                                  T, D));
    if (Dd != D) {
        CAE_TRY(cae_linear_forward(ctx, e->proj, e->out, m->W.proj.w, m->W.proj.b, T, D, Dd));
        CAE_TRY(cae_layernorm_forward(ctx, e->proj_ln, e->proj_mean, e->proj_rstd, e->proj,
                                      m->W.proj_norm.w, m->W.proj_norm.b, T, Dd));
    }
    return 0;
}

static cae_buf encoder_latents(const cae_model *m, const cae_encoder_pass *e)
{
    return m->cfg.decoder_embed_dim != m->cfg.embed_dim ? e->proj_ln : e->out;
}

static int forward(cae_model *m)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t B = m->B, V = (size_t)c->num_visible, M = (size_t)c->num_mask_patches;
    size_t Dd = (size_t)c->decoder_embed_dim, K = (size_t)c->decoder_num_classes;
    cae_rblock_dims rd = {B, V, M, Dd, (size_t)c->decoder_num_heads, (size_t)c->decoder_mlp_hidden};
    cae_block_dims dd = {B, M, Dd, (size_t)c->decoder_num_heads, (size_t)c->decoder_mlp_hidden};

    CAE_TRY(encoder_forward(m, &m->enc, 0));
    /* alignment target: the same weights over the masked patches; cls
     * dropped. With a weight of 0 it changes nothing but the time (the
     * official code computes it anyway), so it is not computed. */
    if (cae_config_has_alignment(c)) {
        CAE_TRY(encoder_forward(m, &m->align, 3));
        CAE_TRY(cae_copy_blocks(ctx, m->latent_target, M * Dd,
                                cae_buf_at(encoder_latents(m, &m->align), Dd), (M + 1) * Dd, B,
                                M * Dd, CAE_OVERWRITE));
    }
    /* visible latents z, cls dropped; position tables of both token sets */
    CAE_TRY(cae_copy_blocks(ctx, m->z, V * Dd, cae_buf_at(encoder_latents(m, &m->enc), Dd),
                            (V + 1) * Dd, B, V * Dd, CAE_OVERWRITE));
    CAE_TRY(cae_gather_rows(ctx, m->p_vis, cae_buf_at(m->pos_dec, Dd), 0, m->enc.acts.idx, B, V,
                            Dd, CAE_OVERWRITE));
    CAE_TRY(cae_gather_rows(ctx, m->p_mask, cae_buf_at(m->pos_dec, Dd), 0, m->align.acts.idx, B, M,
                            Dd, CAE_OVERWRITE));
    CAE_TRY(cae_copy_blocks(ctx, m->pk, (V + M) * Dd, m->p_vis, V * Dd, B, V * Dd, CAE_OVERWRITE));
    CAE_TRY(cae_copy_blocks(ctx, cae_buf_at(m->pk, V * Dd), (V + M) * Dd, m->p_mask, M * Dd, B,
                            M * Dd, CAE_OVERWRITE));
    /* regressor: queries start as the mask token */
    CAE_TRY(cae_broadcast_row(ctx, m->rstream[0], m->W.mask_token, B * M, Dd));
    for (int i = 0; i < c->regressor_depth; i++) {
        cae_buf d1, d2;
        cae_drop_path_at(stack_drops(m, 1), m->B, i, &d1, &d2);
        CAE_TRY(cae_rblock_forward(ctx, &m->W.reg[i], &m->rblocks[i], m->rstream[i + 1], m->rstream[i],
                                   m->z, m->p_mask, m->pk, &rd, d1, d2));
    }
    CAE_TRY(cae_layernorm_forward(ctx, m->latent_pred, m->lp_mean, m->lp_rstd,
                                  m->rstream[c->regressor_depth], m->W.reg_norm.w, m->W.reg_norm.b,
                                  B * M, Dd));
    /* decoder */
    CAE_TRY(cae_add(ctx, m->dstream[0], m->latent_pred, m->p_mask, B * M * Dd));
    for (int i = 0; i < c->decoder_depth; i++) {
        cae_buf d1, d2;
        cae_drop_path_at(stack_drops(m, 2), m->B, i, &d1, &d2);
        CAE_TRY(cae_block_forward(ctx, &m->W.dec[i], &m->dblocks[i], m->dstream[i + 1], m->dstream[i],
                                  &dd, d1, d2));
    }
    CAE_TRY(cae_layernorm_forward(ctx, m->dec_out, m->dec_mean, m->dec_rstd,
                                  m->dstream[c->decoder_depth], m->W.dec_norm.w, m->W.dec_norm.b,
                                  B * M, Dd));
    return cae_linear_forward(ctx, m->logits, m->dec_out, m->W.head.w, m->W.head.b, B * M, Dd, K);
}

/* The pixel target: the masked patches of the (normalized) model input,
 * each optionally normalized to mean 0 and variance 1 (eps 1e-6). */
static int pixel_target(cae_model *m)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, M = (size_t)c->num_mask_patches, K = (size_t)c->decoder_num_classes;
    CAE_TRY(cae_patchify(m->ctx, m->pix_raw, m->samples, m->align.acts.idx, B, M,
                         (size_t)c->input_size, (size_t)c->patch_size));
    if (!c->norm_pix_loss)
        return cae_copy(m->ctx, m->pix_target, m->pix_raw, B * M * K);
    return cae_layernorm_forward(m->ctx, m->pix_target, m->pix_mean, m->pix_rstd, m->pix_raw,
                                 m->pix_ones, m->pix_zeros, B * M, K);
}

/* Loss terms on the device; also writes d(logits) and the MSE part of
 * d(latent_predict) into g_latent. sums: [0] main loss numerator, [1]
 * correct predictions, [2] alignment squared error. */
static int loss(cae_model *m)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t R = m->B * (size_t)c->num_mask_patches, n = R * (size_t)c->decoder_embed_dim;
    size_t K = (size_t)c->decoder_num_classes;

    if (c->pixel_target) {
        /* MSE over every element of every masked patch */
        CAE_TRY(pixel_target(m));
        CAE_TRY(cae_mse(ctx, m->dlogits, m->sq, m->logits, m->pix_target,
                        (float)(1.0 / (double)(R * K)), R * K));
        CAE_TRY(cae_sum(ctx, cae_buf_at(m->sums, 0), m->sq, R * K, m->reduce_scratch));
        CAE_TRY(cae_fill_zero(ctx, cae_buf_at(m->sums, 1), 1));
    } else {
        CAE_TRY(cae_cross_entropy(ctx, m->dlogits, m->row_loss, m->row_correct, m->logits, m->labels,
                                  (float)(1.0 / (double)R), R, K));
        CAE_TRY(cae_sum(ctx, cae_buf_at(m->sums, 0), m->row_loss, R, m->reduce_scratch));
        CAE_TRY(cae_sum(ctx, cae_buf_at(m->sums, 1), m->row_correct, R, m->reduce_scratch));
    }
    if (!cae_config_has_alignment(c)) { /* no target computed: no term, no gradient */
        CAE_TRY(cae_fill_zero(ctx, m->g_latent, n));
        return cae_fill_zero(ctx, cae_buf_at(m->sums, 2), 1);
    }
    CAE_TRY(cae_mse(ctx, m->g_latent, m->sq, m->latent_pred, m->latent_target,
                    (float)(c->align_loss_weight / (double)n), n));
    return cae_sum(ctx, cae_buf_at(m->sums, 2), m->sq, n, m->reduce_scratch);
}

static int block_grads_ready(void *m, int i)
{
    return grads_ready(m, "encoder.blocks.%d.norm1.weight", i);
}

static int encoder_backward(cae_model *m, cae_buf d_latents)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    cae_encoder_pass *e = &m->enc;
    size_t T = m->B * (e->acts.J + 1), D = (size_t)c->embed_dim, Dd = (size_t)c->decoder_embed_dim;
    cae_encoder_hook hook = {block_grads_ready, m};
    cae_buf d_out = d_latents;

    if (Dd != D) {
        CAE_TRY(cae_layernorm_backward(ctx, m->g_proj, m->G.proj_norm.w, m->G.proj_norm.b, d_latents,
                                       e->proj, m->W.proj_norm.w, e->proj_mean, e->proj_rstd, T, Dd,
                                       CAE_OVERWRITE));
        CAE_TRY(cae_linear_backward(ctx, m->s.d1, m->G.proj.w, m->G.proj.b, m->g_proj, e->out,
                                    m->W.proj.w, T, D, Dd, CAE_OVERWRITE));
        CAE_TRY(grads_ready(m, "encoder_to_regresser.weight", 0));
        d_out = m->s.d1;
    }
    CAE_TRY(cae_layernorm_backward(ctx, m->g_stream_enc, m->G.enc_norm.w, m->G.enc_norm.b, d_out,
                                   cae_encoder_out(&e->acts, c), m->W.enc_norm.w, e->out_mean,
                                   e->out_rstd, T, D, CAE_OVERWRITE));
    CAE_TRY(grads_ready(m, "encoder.norm.weight", 0));
    CAE_TRY(cae_encoder_backward(ctx, &m->G.enc, m->g_stream_enc, &e->acts, &m->W.enc,
                                 stack_drops(m, 0), &m->s, c, m->B, &hook));
    return grads_ready(m, "encoder.cls_token", 0);
}

static int backward(cae_model *m)
{
    cae_ctx *ctx = m->ctx;
    const cae_config *c = &m->cfg;
    size_t B = m->B, V = (size_t)c->num_visible, M = (size_t)c->num_mask_patches;
    size_t Dd = (size_t)c->decoder_embed_dim, K = (size_t)c->decoder_num_classes;
    cae_rblock_dims rd = {B, V, M, Dd, (size_t)c->decoder_num_heads, (size_t)c->decoder_mlp_hidden};
    cae_block_dims dd = {B, M, Dd, (size_t)c->decoder_num_heads, (size_t)c->decoder_mlp_hidden};

    CAE_TRY(cae_arena_zero(ctx, &m->table, &m->grads));
    /* decoder */
    CAE_TRY(cae_linear_backward(ctx, m->s.d1, m->G.head.w, m->G.head.b, m->dlogits, m->dec_out,
                                m->W.head.w, B * M, Dd, K, CAE_OVERWRITE));
    CAE_TRY(grads_ready(m, "decoder.head.weight", 0));
    CAE_TRY(cae_layernorm_backward(ctx, m->g_stream_dec, m->G.dec_norm.w, m->G.dec_norm.b, m->s.d1,
                                   m->dstream[c->decoder_depth], m->W.dec_norm.w, m->dec_mean,
                                   m->dec_rstd, B * M, Dd, CAE_OVERWRITE));
    CAE_TRY(grads_ready(m, "decoder.norm.weight", 0));
    for (int i = c->decoder_depth - 1; i >= 0; i--) {
        cae_buf d1, d2;
        cae_drop_path_at(stack_drops(m, 2), m->B, i, &d1, &d2);
        CAE_TRY(cae_block_backward(ctx, &m->W.dec[i], &m->G.dec[i], &m->dblocks[i], m->g_stream_dec,
                                   m->dstream[i], &dd, d1, d2, &m->s));
        CAE_TRY(grads_ready(m, "decoder.decoder_blocks.%d.norm1.weight", i));
    }
    /* latent_predict feeds the decoder and the alignment loss */
    CAE_TRY(cae_add(ctx, m->g_latent, m->g_latent, m->g_stream_dec, B * M * Dd));
    /* regressor */
    CAE_TRY(cae_layernorm_backward(ctx, m->g_q, m->G.reg_norm.w, m->G.reg_norm.b, m->g_latent,
                                   m->rstream[c->regressor_depth], m->W.reg_norm.w, m->lp_mean,
                                   m->lp_rstd, B * M, Dd, CAE_OVERWRITE));
    CAE_TRY(grads_ready(m, "regresser.norm.weight", 0));
    CAE_TRY(cae_fill_zero(ctx, m->g_z, B * V * Dd));
    for (int i = c->regressor_depth - 1; i >= 0; i--) {
        cae_buf d1, d2;
        cae_drop_path_at(stack_drops(m, 1), m->B, i, &d1, &d2);
        CAE_TRY(cae_rblock_backward(ctx, &m->W.reg[i], &m->G.reg[i], &m->rblocks[i], m->g_q, m->g_z,
                                    m->rstream[i], &rd, d1, d2, m->g_kv, &m->s));
        CAE_TRY(grads_ready(m, "regresser.regressor_blocks.%d.norm1_q.weight", i));
    }
    CAE_TRY(cae_colsum_add(ctx, m->G.mask_token, m->g_q, B * M, Dd));
    CAE_TRY(grads_ready(m, "mask_token", 0));
    /* the cls latent is used nowhere after the encoder: its gradient is 0 */
    CAE_TRY(cae_fill_zero(ctx, m->g_zall, B * (V + 1) * Dd));
    CAE_TRY(cae_copy_blocks(ctx, cae_buf_at(m->g_zall, Dd), (V + 1) * Dd, m->g_z, V * Dd, B, V * Dd,
                            CAE_OVERWRITE));
    return encoder_backward(m, m->g_zall);
}

int cae_model_step_begin(cae_model *m)
{
    CAE_TRY(forward(m));
    CAE_TRY(loss(m));
    return backward(m);
}

int cae_model_step(cae_model *m, cae_losses *out)
{
    CAE_TRY(cae_model_step_begin(m));
    return cae_model_step_end(m, out);
}

int cae_model_step_end(cae_model *m, cae_losses *out)
{
    const cae_config *c = &m->cfg;
    double R = (double)m->B * c->num_mask_patches, n = R * c->decoder_embed_dim;
    float sums[3];

    /* the only read-back of the step: three scalars */
    CAE_TRY(cae_read(m->ctx, sums, m->sums, sizeof sums));
    out->loss_main = sums[0] / (c->pixel_target ? R * c->decoder_num_classes : R);
    out->mlm_acc = sums[1] / R;
    out->loss_align = c->align_loss_weight * (sums[2] / n);
    out->loss = out->loss_main + out->loss_align;
    return 0;
}

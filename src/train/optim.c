/* optim.c: AdamW with global-norm clipping over the parameter arena.
 *
 * One step is, per arena buffer, a sum of squared gradients into one device
 * partial (cae_sum_squares), then one single-work-item kernel for the norm
 * and the clip scale, then per buffer one adamw_update over the whole
 * buffer: its decayed prefix and undecayed rest (params.h) differ only in
 * the decay factor. The gaps between tensors take part harmlessly: their
 * gradients are zero (the gradient arena is zeroed whole) so they add
 * nothing to the norm, and their moments stay zero.
 * Kernels: cl/adamw.cl.
 */
#include "train/optim.h"

#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>

struct cae_adamw {
    cae_ctx *ctx;
    const cae_param_table *t;
    const cae_arena *params, *grads; /* the caller's; they outlive o */
    cae_arena m, v;
    cl_mem partials; /* [n_chunks] sum of squared gradients per buffer */
    cl_mem scratch;  /* cae_sum_squares scratch, shared by the buffers */
    cl_mem scale;    /* [1] the clip scale of the current step */
    uint64_t steps;
};

int cae_adamw_new(cae_adamw **out, cae_ctx *ctx, const cae_param_table *t, const cae_arena *params,
                  const cae_arena *grads)
{
    cae_adamw *o;
    size_t scratch = 1;

    *out = NULL;
    if (params->n != t->n_chunks || grads->n != t->n_chunks) {
        cae_errorf("cae_adamw_new: the arenas have %d and %d buffers, the table %d", params->n,
                   grads->n, t->n_chunks);
        return -1;
    }
    o = calloc(1, sizeof *o);
    if (!o) {
        cae_errorf("out of host memory for the optimizer");
        return -1;
    }
    o->ctx = ctx;
    o->t = t;
    o->params = params;
    o->grads = grads;
    for (int c = 0; c < t->n_chunks; c++) {
        size_t s = cae_reduce_scratch_elems(t->chunk_elems[c]);
        if (s > scratch)
            scratch = s;
    }
    /* moments start at zero, as torch's state does */
    if (cae_arena_alloc(ctx, t, &o->m) != 0 || cae_arena_alloc(ctx, t, &o->v) != 0 ||
        cae_arena_zero(ctx, t, &o->m) != 0 || cae_arena_zero(ctx, t, &o->v) != 0 ||
        cae_alloc(ctx, (size_t)t->n_chunks * 4, &o->partials) != 0 ||
        cae_alloc(ctx, scratch * 4, &o->scratch) != 0 || cae_alloc(ctx, 4, &o->scale) != 0) {
        cae_adamw_free(o);
        return -1;
    }
    *out = o;
    return 0;
}

void cae_adamw_free(cae_adamw *o)
{
    if (!o)
        return;
    cae_arena_free(&o->m);
    cae_arena_free(&o->v);
    cae_release(&o->partials);
    cae_release(&o->scratch);
    cae_release(&o->scale);
    free(o);
}

static int check_hparams(const cae_adamw_hparams *h)
{
    /* written so that NaN fails every test */
    if (!(h->lr >= 0) || !(h->weight_decay >= 0) || !(h->beta1 >= 0 && h->beta1 < 1) ||
        !(h->beta2 >= 0 && h->beta2 < 1) || !(h->eps > 0) || isnan(h->clip_grad)) {
        cae_errorf("AdamW: invalid hyperparameters (lr %g, weight_decay %g, betas %g %g, eps %g, "
                   "clip_grad %g)", h->lr, h->weight_decay, h->beta1, h->beta2, h->eps, h->clip_grad);
        return -1;
    }
    return 0;
}

/* grad_norm[0] and the clip scale, from the gradient arena; on the device */
static int clip_coef(cae_adamw *o, const cae_adamw_hparams *h, cae_buf grad_norm)
{
    cae_ctx *ctx = o->ctx;
    const cae_param_table *t = o->t;

    for (int c = 0; c < t->n_chunks; c++)
        CAE_TRY(cae_sum_squares(ctx, (cae_buf){o->partials, (size_t)c},
                                (cae_buf){o->grads->mem[c], 0}, t->chunk_elems[c],
                                (cae_buf){o->scratch, 0}));
    return cae_run_1d(ctx, CAE_K_adamw_clip_coef, 1,
                      CAE_ARGS(CAE_BUF(grad_norm), CAE_BUF(((cae_buf){o->scale, 0})),
                               CAE_BUF(((cae_buf){o->partials, 0})), CAE_ULONG((cl_ulong)t->n_chunks),
                               CAE_FLOAT(h->clip_grad > 0 ? (float)h->clip_grad : 0.0f)));
}

/* adamw_update over elements [off, off + n) of buffer c, of which the
 * first decay_n decay, at learning rate lr; the scalars as torch computes
 * them: in double, then cast to float where they meet the float tensors */
static int update(cae_adamw *o, const cae_adamw_hparams *h, cl_kernel k, int c, size_t off,
                  size_t n, size_t decay_n, double lr)
{
    double step = (double)(o->steps + 1);
    double bc1 = 1.0 - pow(h->beta1, step), bc2 = 1.0 - pow(h->beta2, step);
    cl_uint a = 0;
    CAE_TRY(cae_arg_buf(k, &a, (cae_buf){o->params->mem[c], off}));
    CAE_TRY(cae_arg_buf(k, &a, (cae_buf){o->grads->mem[c], off}));
    CAE_TRY(cae_arg_buf(k, &a, (cae_buf){o->m.mem[c], off}));
    CAE_TRY(cae_arg_buf(k, &a, (cae_buf){o->v.mem[c], off}));
    CAE_TRY(cae_arg_buf(k, &a, (cae_buf){o->scale, 0}));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    CAE_TRY(cae_arg_ulong(k, &a, decay_n));
    CAE_TRY(cae_arg_float(k, &a, (float)(1.0 - lr * h->weight_decay)));
    CAE_TRY(cae_arg_float(k, &a, (float)h->beta1));
    CAE_TRY(cae_arg_float(k, &a, (float)(1.0 - h->beta1)));
    CAE_TRY(cae_arg_float(k, &a, (float)h->beta2));
    CAE_TRY(cae_arg_float(k, &a, (float)(1.0 - h->beta2)));
    CAE_TRY(cae_arg_float(k, &a, (float)(-(lr / bc1))));
    CAE_TRY(cae_arg_float(k, &a, (float)sqrt(bc2)));
    CAE_TRY(cae_arg_float(k, &a, (float)h->eps));
    return cae_launch_id_1d(o->ctx, CAE_K_adamw_update, n);
}

int cae_adamw_step(cae_adamw *o, const cae_adamw_hparams *h, cae_buf grad_norm)
{
    return cae_adamw_step_scaled(o, h, NULL, grad_norm);
}

int cae_adamw_step_scaled(cae_adamw *o, const cae_adamw_hparams *h, const double *lr_scale,
                          cae_buf grad_norm)
{
    cae_ctx *ctx = o->ctx;
    const cae_param_table *t = o->t;
    cl_kernel k;

    if (!grad_norm.mem) {
        cae_errorf("cae_adamw_step: grad_norm must be a device buffer");
        return -1;
    }
    CAE_TRY(check_hparams(h));
    if (lr_scale) {
        for (size_t i = 0; i < t->n; i++) {
            if (!(lr_scale[i] >= 0)) {
                cae_errorf("AdamW: lr scale %g of %s is not a non-negative number", lr_scale[i],
                           t->p[i].name);
                return -1;
            }
        }
    }
    CAE_TRY(clip_coef(o, h, grad_norm));
    k = ctx->kernel[CAE_K_adamw_update];
    if (!lr_scale) {
        /* one launch per buffer: its decayed prefix and undecayed rest */
        for (int c = 0; c < t->n_chunks; c++)
            CAE_TRY(update(o, h, k, c, 0, t->chunk_elems[c], t->chunk_decay_elems[c], h->lr));
    } else {
        /* one launch per tensor at its own lr (the gaps keep zero moments
         * and are never updated) */
        for (size_t i = 0; i < t->n; i++) {
            const cae_param *p = &t->p[i];
            CAE_TRY(update(o, h, k, p->chunk, p->off, p->numel, p->decay ? p->numel : 0,
                           h->lr * lr_scale[i]));
        }
    }
    o->steps++;
    return 0;
}

const cae_arena *cae_adamw_exp_avg(const cae_adamw *o)
{
    return &o->m;
}

const cae_arena *cae_adamw_exp_avg_sq(const cae_adamw *o)
{
    return &o->v;
}

uint64_t cae_adamw_steps(const cae_adamw *o)
{
    return o->steps;
}

void cae_adamw_set_steps(cae_adamw *o, uint64_t steps)
{
    o->steps = steps;
}

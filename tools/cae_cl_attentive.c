/* cae-cl-attentive: attentive probing of a CAE encoder on one device, the C
 * counterpart of the official tools/run_attentive.py with
 * --enable_linear_eval --linear_type attentive (same flags).
 *
 * The encoder is frozen (--finetune CKPT, or 'random' for the baseline). A
 * learned query token attends once over all of an image's encoder tokens
 * through a cross-attention block with separate LayerNorms on the query,
 * keys and values (no residual, no MLP), then a BatchNorm without affine
 * parameters and a linear head (src/eval/attentive.h). The keys and values are
 * the tokens the official probe uses: all of them, cls + patches, as the
 * encoder's forward_features hands them over, i.e. after the final
 * LayerNorm with --use_cls (the official recipe) and before it with
 * --use_mean_pooling (the official model then replaces its final norm by an
 * identity).
 *
 * SGD with momentum (--opt sgd: Nesterov, as the official create_optimizer;
 * --opt momentum: plain), lr = --lr, or --blr * batch / 256 when --lr is not
 * given, cosine to --min_lr with --warmup_epochs of linear warmup; weight
 * decay on the query token and the 2-D weights only. The block and head run
 * on the device, the SGD step on the host (src/eval/sgd.h).
 *
 * Every epoch writes <output_dir>/checkpoint-attentive.safetensors (the
 * trainable part under the official keys query_token,
 * attentive_blocks.0.*, fc_norm.running_{mean,var}, head.*, plus the
 * momentum buffers and the run's progress); --resume FILE continues from
 * it, --eval --resume FILE evaluates it without training.
 */
#include "eval/attentive.h"
#include "runtime/errors.h"
#include "eval/probe.h"
#include "mpi/probe_ranks.h"
#include "eval/sgd.h"

#include <stdlib.h>
#include <string.h>

#define N_TENSORS (2 * CAE_ATT_NPARAMS + 2)

typedef struct {
    cae_probe *p;
    cae_attentive att;
    cae_sgd sgd;
    double weight_decay;
    float *params, *grads, *mom, *rm, *rv; /* host: [n_params] x 3, [D] x 2 */
    char mom_names[CAE_ATT_NPARAMS][128];
} attentive_head;

static int head_init(attentive_head *h, cae_probe *p)
{
    size_t T = p->F / p->D, n;
    h->p = p;
    CAE_TRY(cae_sgd_parse(p->a.opt, &h->sgd));
    h->sgd.momentum = p->a.momentum;
    h->weight_decay = p->a.weight_decay;
    CAE_TRY(cae_attentive_init(&h->att, &p->ctx, p->B, T, p->D, (size_t)p->a.model.num_heads,
                               p->K));
    n = h->att.n_params;
    h->params = calloc(n, sizeof *h->params);
    h->grads = calloc(n, sizeof *h->grads);
    h->mom = calloc(n, sizeof *h->mom);
    h->rm = calloc(p->D, sizeof *h->rm);
    h->rv = calloc(p->D, sizeof *h->rv);
    if (!h->params || !h->grads || !h->mom || !h->rm || !h->rv) {
        cae_errorf("out of host memory");
        return -1;
    }
    for (int i = 0; i < CAE_ATT_NPARAMS; i++)
        snprintf(h->mom_names[i], sizeof h->mom_names[i], "momentum_buffer.%s", h->att.p[i].name);
    cae_attentive_init_params(&h->att, (uint64_t)p->a.seed, h->params);
    return cae_write(&p->ctx, h->att.params, h->params, n * 4);
}

static void head_free(void *self)
{
    attentive_head *h = self;
    cae_attentive_free(&h->att);
    free(h->params);
    free(h->grads);
    free(h->mom);
    free(h->rm);
    free(h->rv);
}

static size_t trained_numel(const attentive_head *h)
{
    size_t n = 0;
    for (int i = 0; i < CAE_ATT_NPARAMS; i++)
        n += h->att.p[i].trained ? h->att.p[i].numel : 0;
    return n;
}

static int head_step(void *self, const float *feat, const int32_t *labels, double lr, double *loss)
{
    attentive_head *h = self;
    CAE_TRY(cae_attentive_train_step(&h->att, feat, labels, h->grads, loss));
    CAE_TRY(cae_probe_mean(h->p, h->grads, h->att.n_params));
    h->sgd.lr = lr;
    for (int i = 0; i < CAE_ATT_NPARAMS; i++) {
        const cae_att_param *q = &h->att.p[i];
        if (q->trained)
            cae_sgd_step(&h->sgd, h->params + q->off, h->grads + q->off, h->mom + q->off, q->numel,
                         q->decay ? h->weight_decay : 0.0);
    }
    return cae_write(&h->p->ctx, h->att.params, h->params, h->att.n_params * 4);
}

static int head_logits(void *self, const float *feat, size_t m, float *logits)
{
    attentive_head *h = self;
    return cae_attentive_logits(&h->att, feat, m, logits);
}

/* The checkpoint's tensors: the parameters and BN running statistics under
 * the official keys, then (with_momentum) the SGD momentum buffers of the
 * trained ones. Returns the count. */
static size_t head_tensors(attentive_head *h, cae_probe_tensor *t, int with_momentum)
{
    size_t n = 0;
    int64_t D = (int64_t)h->p->D;
    for (int i = 0; i < CAE_ATT_NPARAMS; i++) {
        const cae_att_param *q = &h->att.p[i];
        t[n++] = (cae_probe_tensor){q->name, q->ndim, {q->shape[0], q->shape[1], q->shape[2]},
                                    h->params + q->off};
    }
    t[n++] = (cae_probe_tensor){"fc_norm.running_mean", 1, {D}, h->rm};
    t[n++] = (cae_probe_tensor){"fc_norm.running_var", 1, {D}, h->rv};
    for (int i = 0; with_momentum && i < CAE_ATT_NPARAMS; i++) {
        const cae_att_param *q = &h->att.p[i];
        if (q->trained)
            t[n++] = (cae_probe_tensor){h->mom_names[i], q->ndim,
                                        {q->shape[0], q->shape[1], q->shape[2]}, h->mom + q->off};
    }
    return n;
}

static int head_save(void *self, const char *path, const cae_probe_state *st)
{
    attentive_head *h = self;
    cae_probe_tensor t[N_TENSORS];
    size_t n = head_tensors(h, t, 1);
    const char *meta[] = {"format", "cae-cl-attentive-head-1", "finetune", h->p->a.finetune,
                          "tokens", h->p->pool == CAE_POOL_TOKENS ? "final-norm" : "pre-norm",
                          "opt", h->sgd.nesterov ? "sgd" : "momentum"};
    CAE_TRY(cae_read(&h->p->ctx, h->rm, h->att.run_mean, h->p->D * 4));
    CAE_TRY(cae_read(&h->p->ctx, h->rv, h->att.run_var, h->p->D * 4));
    return cae_probe_save(path, t, n, meta, 4, st);
}

/* --eval needs only the parameters and running statistics; a resumed run
 * needs the momentum buffers too. */
static int head_load(void *self, const char *path, cae_probe_state *st)
{
    attentive_head *h = self;
    cae_probe_tensor t[N_TENSORS];
    size_t n = head_tensors(h, t, !h->p->a.eval);
    CAE_TRY(cae_probe_load(path, t, n, st));
    CAE_TRY(cae_write(&h->p->ctx, h->att.run_mean, h->rm, h->p->D * 4));
    CAE_TRY(cae_write(&h->p->ctx, h->att.run_var, h->rv, h->p->D * 4));
    return cae_write(&h->p->ctx, h->att.params, h->params, h->att.n_params * 4);
}

/* rank 0's running statistics on every rank */
static int head_sync(void *self)
{
    attentive_head *h = self;
    size_t D = h->p->D;
    CAE_TRY(cae_read(&h->p->ctx, h->rm, h->att.run_mean, D * 4));
    CAE_TRY(cae_read(&h->p->ctx, h->rv, h->att.run_var, D * 4));
    CAE_TRY(cae_probe_bcast(h->p, h->rm, D));
    CAE_TRY(cae_probe_bcast(h->p, h->rv, D));
    CAE_TRY(cae_write(&h->p->ctx, h->att.run_mean, h->rm, D * 4));
    return cae_write(&h->p->ctx, h->att.run_var, h->rv, D * 4);
}

/* The official recipe (CAE's README: batch 256 per GPU on 8 GPUs, lr 0.4,
 * i.e. blr 0.05, 90 epochs, 10 warmup, weight decay 0, SGD momentum 0.9,
 * min_lr 1e-6) where the pretraining defaults differ. The built-in
 * Fashion-MNIST run keeps blr 0.05 (lr 0.05 at batch 256; lr 0.5 diverges
 * there) and trains 10 epochs with 1 of warmup. */
static void attentive_defaults(cae_args *a, int argc, char **argv)
{
    if (!cae_args_given(argc, argv, "blr"))
        a->blr = 0.05;
    if (!cae_args_given(argc, argv, "epochs"))
        a->epochs = a->builtin_data ? 10 : 90;
    if (!cae_args_given(argc, argv, "warmup_epochs"))
        a->warmup_epochs = a->builtin_data ? 1 : 10;
    if (!cae_args_given(argc, argv, "batch_size"))
        a->batch_size = 256;
    if (!cae_args_given(argc, argv, "weight_decay"))
        a->weight_decay = 0.0;
    if (!cae_args_given(argc, argv, "min_lr"))
        a->min_lr = 1e-6;
    if (!cae_args_given(argc, argv, "opt"))
        a->opt = "sgd";
    if (!cae_args_given(argc, argv, "output_dir"))
        a->output_dir = "output-attentive";
}

/* The probe proper (cae_probe_program.run): 0, or 1 after the cause was
 * reported. */
static int run_attentive(cae_probe *p, void *head_state, int argc, char **argv)
{
    attentive_head *h = head_state;
    cae_probe_head ops = {"attentive", 0, 1, head_step, head_logits, head_save, head_load,
                          head_sync};
    int lr_given = cae_args_given(argc, argv, "lr"), r0 = p->ranks.rank == 0;
    size_t global;
    attentive_defaults(&p->a, argc, argv);
    /* the official model's final norm is an identity with --use_mean_pooling */
    if (cae_sgd_parse(p->a.opt, &h->sgd) != 0 ||
        cae_probe_setup(p, p->a.use_mean_pooling ? CAE_POOL_TOKENS_PRENORM : CAE_POOL_TOKENS) != 0 ||
        head_init(h, p) != 0)
        return 1;
    global = p->B * (size_t)p->ranks.world;
    ops.n_parameters = trained_numel(h);
    p->sched.base = lr_given ? p->a.lr : p->a.blr * (double)global / 256.0;
    p->sched.final = p->a.min_lr;
    if (r0 && lr_given)
        printf("lr %.6g (--lr)", p->sched.base);
    else if (r0)
        printf("lr %.6g (blr %.6g * global batch %zu / 256)", p->sched.base, p->a.blr, global);
    if (r0)
        printf(", SGD (%s, momentum %g, weight decay %g), %d epochs (%d warmup) of %zu steps, "
               "min_lr %g\n",
               h->sgd.nesterov ? "Nesterov" : "plain", p->a.momentum, p->a.weight_decay,
               p->a.epochs, p->a.warmup_epochs, cae_probe_steps_per_epoch(p), p->a.min_lr);
    return cae_probe_run(p, &ops, h) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const cae_probe_program prog = {
        "cae-cl-attentive",
        "attentive probing of a CAE encoder (official tools/run_attentive.py flags)",
        "attentive", "attentive", run_attentive, head_free};
    static cae_probe p;
    static attentive_head h;
    return cae_probe_main(argc, argv, &prog, &p, &h);
}

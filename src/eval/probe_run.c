/* probe_run.c: the probes' setup and epoch loop around a program's head
 * (see probe.h). */
#include "eval/probe.h"

#include "runtime/errors.h"
#include "train/checkpoint.h"
#include "train/train_log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size, int *fail)
{
    void *v = calloc(n ? n : 1, size);
    if (!v)
        *fail = 1;
    return v;
}

static const char *pool_name(cae_pool pool)
{
    switch (pool) {
    case CAE_POOL_CLS:
        return "cls token";
    case CAE_POOL_MEAN:
        return "mean of patch tokens";
    case CAE_POOL_TOKENS:
        return "all tokens (cls + patches) of the final norm";
    default:
        return "all tokens (cls + patches) of the last block, before the final norm";
    }
}

int cae_probe_setup(cae_probe *p, cae_pool pool)
{
    cae_args *a = &p->a;
    cae_ctx_options opt = {.gemm = a->gemm};
    char desc[512];
    size_t n_val, n_train;
    int fail = 0;

    int r0;
    if (p->ranks.world < 1)
        p->ranks.world = 1;
    r0 = p->ranks.rank == 0;
    if (!a->finetune) {
        cae_errorf("--finetune: give the encoder (a checkpoint or weights .safetensors) or 'random'");
        return -1;
    }
    if (a->epochs <= 0 || a->warmup_epochs < 0) {
        cae_errorf("--epochs %d / --warmup_epochs %d: epochs must be positive", a->epochs,
                   a->warmup_epochs);
        return -1;
    }
    a->model.pixel_target = 1; /* only the encoder is used: keep the table small */
    CAE_TRY(cae_config_finish_encoder(&a->model));
    p->pool = pool;
    p->B = (size_t)a->batch_size;
    p->D = (size_t)a->model.embed_dim;
    p->S = (size_t)a->model.input_size;
    if (r0)
        CAE_TRY(cae_output_dir_make(a->output_dir));
    CAE_TRY(cae_dataset_open_splits(&p->train, &p->val, a->data_path));
    p->K = a->nb_classes > 0 ? (size_t)a->nb_classes : cae_dataset_num_classes(p->train);
    n_train = cae_dataset_len(p->train);
    n_val = cae_dataset_len(p->val);
    if (n_train < p->B * (size_t)p->ranks.world) {
        cae_errorf("--batch_size %zu on %d ranks: more than the %zu training images", p->B,
                   p->ranks.world, n_train);
        return -1;
    }
    CAE_TRY(cae_probe_train_augment(&p->aug, (int)p->S, a->imagenet_default_mean_and_std));
    CAE_TRY(cae_cls_loader_new(&p->loader, 1, p->B));
    CAE_TRY(cae_ctx_init(&p->ctx, &opt));
    p->have_ctx = 1;
    cae_config_describe(&a->model, desc, sizeof desc);
    if (r0)
        printf("device: %s (%s)\nencoder: %s\ntrain: %s\nval: %s\nfeatures: %s, classes %zu\n"
               "ranks: %d, batch %zu per rank, %zu global%s\n",
               p->ctx.device_name, p->ctx.platform_name, desc, cae_dataset_describe(p->train),
               cae_dataset_describe(p->val), pool_name(pool), p->K, p->ranks.world, p->B,
               p->B * (size_t)p->ranks.world,
               p->ranks.world > 1 && a->dist_eval ? ", evaluation sharded (--dist_eval)" : "");
    CAE_TRY(cae_encoder_eval_init(&p->enc, &p->ctx, &a->model, p->B));
    p->have_enc = 1;
    p->F = cae_encoder_eval_feature_size(&p->enc, pool);
    CAE_TRY(cae_encoder_eval_load(&p->enc, a->finetune, (uint64_t)a->seed));
    if (r0) {
        printf("encoder weights: %s\n",
               strcmp(a->finetune, "random") == 0 ? "random (official init)" : a->finetune);
        fflush(stdout);
    }
    p->val_feat = xcalloc(n_val * p->F, sizeof *p->val_feat, &fail);
    p->val_labels = xcalloc(n_val, sizeof *p->val_labels, &fail);
    p->train_labels = xcalloc(n_train, sizeof *p->train_labels, &fail);
    if (a->cache_features && !a->eval)
        p->train_feat = xcalloc(n_train * p->F, sizeof *p->train_feat, &fail);
    p->images = xcalloc(p->B * 3 * p->S * p->S, sizeof *p->images, &fail);
    p->feat = xcalloc(p->B * p->F, sizeof *p->feat, &fail);
    p->logits = xcalloc(p->B * (p->K > 1 ? p->K : 1), sizeof *p->logits, &fail);
    p->labels = xcalloc(p->B, sizeof *p->labels, &fail);
    p->batch_idx = xcalloc(p->B, sizeof *p->batch_idx, &fail);
    p->batch_seeds = xcalloc(p->B, sizeof *p->batch_seeds, &fail);
    if (fail) {
        cae_errorf("out of host memory for the features (%.0f MiB per cached split image set)",
                   (double)n_train * (double)p->F * 4 / 1048576.0);
        return -1;
    }
    if (!r0)
        return 0; /* rank 0 alone writes */
    p->log = cae_output_open(a->output_dir, "log.txt");
    p->metrics = cae_output_open(a->output_dir, "metrics.jsonl");
    return p->log && p->metrics ? 0 : -1;
}

size_t cae_probe_steps_per_epoch(const cae_probe *p)
{
    return cae_dataset_len(p->train) / (p->B * (size_t)(p->ranks.world > 1 ? p->ranks.world : 1));
}

int cae_probe_mean(const cae_probe *p, float *v, size_t n)
{
    return p->ranks.world > 1 ? p->ranks.mean_f32(p->ranks.user, v, n) : 0;
}

int cae_probe_bcast(const cae_probe *p, float *v, size_t n)
{
    return p->ranks.world > 1 ? p->ranks.bcast_f32(p->ranks.user, v, n) : 0;
}

static int sum_over_ranks(const cae_probe *p, double *v, int n)
{
    return p->ranks.world > 1 ? p->ranks.sum_f64(p->ranks.user, v, n) : 0;
}

/* With --dist_eval each rank counts its shard of the batches and the counts
 * are summed; else every rank evaluates everything. */
static int evaluate(cae_probe *p, const cae_probe_head *h, void *head, cae_probe_result *r)
{
    size_t n = cae_dataset_len(p->val), world = (size_t)p->ranks.world;
    int shard = p->a.dist_eval && world > 1;
    cae_probe_counts c = {0};
    if (world > 1)
        CAE_TRY(h->sync(head));
    for (size_t s = 0; s < n; s += p->B) {
        size_t m = n - s < p->B ? n - s : p->B;
        if (shard && (s / p->B) % world != (size_t)p->ranks.rank)
            continue;
        CAE_TRY(h->logits(head, p->val_feat + s * p->F, m, p->logits));
        cae_probe_count(&c, p->logits, p->val_labels + s, m, p->K);
    }
    if (shard) {
        double v[4] = {c.loss_sum, (double)c.c1, (double)c.c5, (double)c.n};
        CAE_TRY(sum_over_ranks(p, v, 4));
        c.loss_sum = v[0];
        c.c1 = (size_t)v[1];
        c.c5 = (size_t)v[2];
        c.n = (size_t)v[3];
    }
    cae_probe_result_of(&c, r);
    return 0;
}

static int eval_only(cae_probe *p, const cae_probe_head *h, void *head)
{
    cae_probe_result ev;
    cae_probe_state st;
    CAE_TRY(h->load(head, p->a.resume, &st));
    CAE_TRY(evaluate(p, h, head, &ev));
    if (p->ranks.rank != 0)
        return 0;
    printf("Accuracy of the head %s on the %zu test images: acc1 %.2f%% acc5 %.2f%% loss %.4f\n",
           p->a.resume, ev.n, ev.acc1, ev.acc5, ev.loss);
    return cae_cls_log_eval(p->log, ev.loss, ev.acc1, ev.acc5);
}

static void shuffle(size_t *perm, size_t n, cae_rng *r)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cae_rng_int(r, 0, (int64_t)i - 1), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* One epoch of training steps; *loss_mean and *lr_last for the logs. */
static int train_epoch(cae_probe *p, const cae_probe_head *h, void *head, int epoch, size_t *perm,
                       uint64_t *step, double *loss_mean, double *lr_last)
{
    size_t n_train = cae_dataset_len(p->train), steps = cae_probe_steps_per_epoch(p);
    size_t global = p->B * (size_t)p->ranks.world, first = (size_t)p->ranks.rank * p->B;
    double loss_sum = 0;
    cae_rng r;
    /* the shuffle depends on (seed, epoch) only, so a resumed run sees the same order */
    cae_rng_seed(&r, (uint64_t)p->a.seed * 1000003ULL + (uint64_t)epoch);
    shuffle(perm, n_train, &r);
    for (size_t s = 0; s < steps; s++, (*step)++) {
        const size_t *idx = perm + s * global; /* this step's global batch */
        double loss, lr = cae_schedule_at(&p->sched, *step);
        if (p->a.cache_features) {
            for (size_t i = 0; i < p->B; i++) {
                size_t j = idx[first + i];
                memcpy(p->feat + i * p->F, p->train_feat + j * p->F, p->F * 4);
                p->labels[i] = p->train_labels[j];
            }
        } else {
            CAE_TRY(cae_probe_augmented(p, idx, &r, p->feat, p->labels));
        }
        CAE_TRY(h->step(head, p->feat, p->labels, lr, &loss));
        if (!isfinite(loss)) {
            cae_errorf("epoch %d step %zu: loss is %g; stopping", epoch, s, loss);
            return -1;
        }
        loss_sum += loss;
        *lr_last = lr;
    }
    CAE_TRY(sum_over_ranks(p, &loss_sum, 1));
    *loss_mean = loss_sum / (double)steps / (double)p->ranks.world;
    return 0;
}

int cae_probe_run(cae_probe *p, const cae_probe_head *h, void *head)
{
    cae_args *a = &p->a;
    size_t n_train = cae_dataset_len(p->train), steps = cae_probe_steps_per_epoch(p);
    size_t *perm = NULL;
    cae_probe_state st = {0, -1, -1};
    double t_start = cae_now_ms();
    uint64_t step;
    int rc = -1, r0 = p->ranks.rank == 0;
    char path[4200];

    CAE_TRY(cae_checkpoint_path(path, sizeof path, a->output_dir, h->name));
    p->sched.epochs = (size_t)a->epochs;
    p->sched.niter_per_ep = steps;
    p->sched.warmup_epochs = (size_t)a->warmup_epochs;
    p->sched.warmup_steps = -1;
    CAE_TRY(cae_probe_extract(p, p->val, a->dist_eval, p->val_feat, p->val_labels));
    if (a->eval)
        return eval_only(p, h, head);
    if (a->resume && a->resume[0]) {
        if (!h->can_resume) {
            cae_errorf("--resume %s: cae-cl-%s resumes only with --eval (its checkpoint has no "
                       "optimizer state)", a->resume, h->name);
            return -1;
        }
        CAE_TRY(h->load(head, a->resume, &st));
        if (r0)
            printf("resumed from %s: next epoch %d, max accuracy %.2f%% (epoch %d)\n",
                   a->resume, st.next_epoch, st.best, st.best_epoch);
    }
    if (a->cache_features) {
        /* every rank may train on any image: each computes them all */
        if (r0)
            printf("--cache_features: training features computed once, without augmentation "
                   "(the evaluation transform), and reused every epoch\n");
        CAE_TRY(cae_probe_extract(p, p->train, 0, p->train_feat, p->train_labels));
    }
    perm = malloc(n_train * sizeof *perm);
    if (!perm) {
        cae_errorf("out of host memory");
        return -1;
    }
    step = (uint64_t)(st.next_epoch > 0 ? st.next_epoch : 0) * steps;
    for (int epoch = st.next_epoch; epoch < a->epochs; epoch++) {
        double loss = 0, lr = 0, t0 = cae_now_ms();
        cae_probe_result ev;
        if (train_epoch(p, h, head, epoch, perm, &step, &loss, &lr) != 0 ||
            evaluate(p, h, head, &ev) != 0)
            goto out;
        if (ev.acc1 > st.best) {
            st.best = ev.acc1;
            st.best_epoch = epoch;
        }
        st.next_epoch = epoch + 1;
        if (!r0)
            continue;
        printf("epoch %d: train_loss %.4f lr %.5g | test_loss %.4f acc1 %.2f%% acc5 %.2f%% on %zu "
               "images | %.1f s | max accuracy %.2f%%\n",
               epoch, loss, lr, ev.loss, ev.acc1, ev.acc5, ev.n, (cae_now_ms() - t0) / 1e3,
               st.best);
        fflush(stdout);
        if (cae_cls_log_epoch(p->log, p->metrics, a->output_dir,
                              &(cae_cls_epoch_log){(uint64_t)epoch, step, lr, loss, ev.loss,
                                                   ev.acc1, ev.acc5, (cae_now_ms() - t0) / 1e3,
                                                   h->n_parameters}) != 0 ||
            ((epoch % a->save_freq == 0 || epoch + 1 == a->epochs) &&
             h->save(head, path, &st) != 0))
            goto out;
    }
    if (!r0) {
        rc = 0;
        goto out;
    }
    printf("Max accuracy: %.2f%% at epoch %d (wall time %.1f s)\n", st.best, st.best_epoch,
           (cae_now_ms() - t_start) / 1e3);
    rc = cae_cls_log_best(p->log, st.best, st.best_epoch);
out:
    free(perm);
    return rc;
}

void cae_probe_teardown(cae_probe *p)
{
    if (p->log)
        fclose(p->log);
    if (p->metrics)
        fclose(p->metrics);
    cae_cls_loader_free(p->loader);
    if (p->have_enc)
        cae_encoder_eval_free(&p->enc);
    if (p->have_ctx)
        cae_ctx_free(&p->ctx);
    cae_dataset_free(p->train);
    cae_dataset_free(p->val);
    free(p->val_feat);
    free(p->train_feat);
    free(p->val_labels);
    free(p->train_labels);
    free(p->images);
    free(p->feat);
    free(p->logits);
    free(p->labels);
    free(p->batch_idx);
    free(p->batch_seeds);
}

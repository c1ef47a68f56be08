/* cae-cl-finetune: full fine-tuning of a CAE encoder as a classifier on one
 * device, the C counterpart of the official tools/run_class_finetuning.py
 * (same flags).
 *
 * Model: the encoder over all patches, the mean of the patch tokens,
 * fc_norm and a linear head (src/finetune_model.h), from --finetune CKPT
 * (encoder.* keys, prefix stripped) or 'random'. AdamW with layer-wise lr
 * decay (src/layer_decay.h), weight decay except for 1-D tensors, biases
 * and cls_token; the lr (like min_lr and warmup_lr) is scaled by global
 * batch / 256 as the official script does (--blr, when given, replaces
 * --lr as that base); cosine schedule with warmup per step. Data: timm's
 * training transform (RandomResizedCrop, flip, RandAugment --aa, random
 * erasing --reprob) and Mixup/CutMix (--mixup --cutmix --mixup_prob
 * --mixup_switch_prob) with label smoothing (--smoothing); loss: soft-target
 * cross-entropy.
 *
 * Every epoch: evaluation (top-1, top-5, loss on DIR/val, or Fashion-MNIST's
 * 10k test images without --data_path) with resize to input_size/0.875 and
 * a center crop; a line in log.txt (official keys) and metrics.jsonl; an
 * atomic checkpoint-<epoch>.safetensors (model under the fine-tuning keys,
 * AdamW moments, epoch/step metadata) from which a restart continues
 * identically (--auto_resume, the default, or --resume FILE). --eval
 * evaluates --resume (or --finetune) without training.
 */
#define _POSIX_C_SOURCE 200809L
#include "train/args.h"
#include "train/checkpoint.h"
#include "data/augment.h"
#include "data/cls_transform.h"
#include "data/mixup.h"
#include "data/randaug.h"
#include "data/dataset.h"
#include "data/rng.h"
#include "mpi/allreduce.h"
#include "mpi/dist.h"
#include "runtime/errors.h"
#include "eval/finetune_model.h"
#include "eval/layer_decay.h"
#include "train/optim.h"
#include "eval/probe.h"
#include "train/schedule.h"
#include "train/train_log.h"

#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    cae_args a;
    int argc;
    char **argv;
    cae_ctx ctx;
    int have_ctx, have_model;
    cae_dataset *train, *val;
    cae_ft_model model;
    cae_adamw *opt;
    cl_mem norm_mem;
    double *lr_scale;
    size_t B, K, S;
    float *images, *targets, *logits;
    int32_t *labels;
    size_t *batch_idx;
    uint64_t *batch_seeds;
    struct loader_state *loaders; /* one per --num_workers thread */
    int n_workers;
    FILE *log, *metrics;     /* rank 0's */
    cae_dist *dist;          /* under mpirun: data parallel, --batch_size per rank */
    cae_allreduce *ar;       /* gradient averages (world > 1) */
} tuner;

/* ---- data ---- */

typedef struct loader_state {
    cae_decoder *dec;
    cae_image img;
    cae_augment_scratch *aug;
} loader_state;

static int load_one(tuner *t, loader_state *ls, const cae_dataset *ds, size_t idx,
                    const cae_cls_train_cfg *aug, uint64_t seed, float *view, int32_t *label)
{
    if (cae_dataset_get(ds, idx, ls->dec, &ls->img) != 0) {
        cae_errorf("%s: image %zu cannot be used", cae_dataset_describe(ds), idx);
        return -1;
    }
    *label = cae_dataset_label(ds, idx);
    if (*label < 0 || (size_t)*label >= t->K) {
        cae_errorf("%s: label %d of image %zu is outside --nb_classes %zu",
                   cae_dataset_describe(ds), *label, idx, t->K);
        return -1;
    }
    if (aug)
        return cae_cls_train_transform(aug, &ls->img, seed, ls->aug, view);
    /* Resize(int(S / 0.875), bicubic) + CenterCrop(S), as the official eval;
     * inputs of 32 pixels or less are used as they are (build_transform) */
    return cae_cls_eval_transform((int)t->S, cae_cls_eval_crop_pct((int)t->S), CAE_FILTER_BICUBIC,
                                  t->a.imagenet_default_mean_and_std, &ls->img, ls->aug, view);
}

/* One thread's share of a batch: images first, first + stride, ... */
typedef struct {
    tuner *t;
    loader_state *ls;
    const cae_dataset *ds;
    const cae_cls_train_cfg *aug;
    size_t n, first, stride;
    int rc;
} load_job;

static void *load_worker(void *arg)
{
    load_job *j = arg;
    tuner *t = j->t;
    size_t view = 3 * t->S * t->S;
    j->rc = 0;
    for (size_t i = j->first; i < j->n && j->rc == 0; i += j->stride)
        j->rc = load_one(t, j->ls, j->ds, t->batch_idx[i], j->aug,
                         j->aug ? t->batch_seeds[i] : 0, t->images + i * view, &t->labels[i]);
    return NULL;
}

/* Images t->batch_idx[0..n) of ds into t->images / t->labels (training
 * transform with seeds t->batch_seeds when aug is given), over
 * --num_workers threads; every image's result depends only on its seed,
 * so the thread count never changes the batch. */
static int load_batch(tuner *t, const cae_dataset *ds, const cae_cls_train_cfg *aug, size_t n)
{
    int W = t->n_workers, rc = 0;
    load_job jobs[64];
    pthread_t threads[64];
    int started[64] = {0};
    for (int w = 0; w < W; w++)
        jobs[w] = (load_job){t, &t->loaders[w], ds, aug, n, (size_t)w, (size_t)W, 0};
    for (int w = 1; w < W; w++)
        started[w] = pthread_create(&threads[w], NULL, load_worker, &jobs[w]) == 0;
    for (int w = 0; w < W; w++)
        if (!started[w]) /* the calling thread's share, and any a thread could not take */
            load_worker(&jobs[w]);
    for (int w = 1; w < W; w++)
        if (started[w])
            pthread_join(threads[w], NULL);
    for (int w = 0; w < W; w++)
        rc |= jobs[w].rc;
    return rc ? -1 : 0;
}

/* ---- evaluation ---- */


/* top-1, top-5 and mean cross-entropy on the val split, counted as the
 * probes count them (src/probe_eval.c) */
static int evaluate(tuner *t, cae_probe_result *r)
{
    size_t n = cae_dataset_len(t->val);
    cae_probe_counts c = {0};
    /* --dist_eval under mpirun: batch b on rank b % world, sums over ranks */
    const int shard = t->a.dist_eval && t->dist->world > 1;
    for (size_t s = 0; s < n; s += t->B) {
        size_t m = n - s < t->B ? n - s : t->B;
        if (shard && (s / t->B) % (size_t)t->dist->world != (size_t)t->dist->rank)
            continue;
        for (size_t i = 0; i < m; i++)
            t->batch_idx[i] = s + i;
        CAE_TRY(load_batch(t, t->val, NULL, m));
        CAE_TRY(cae_ft_logits(&t->model, t->images, m, t->logits));
        cae_probe_count(&c, t->logits, t->labels, m, t->K);
    }
    if (shard) {
        double sums[4] = {c.loss_sum, (double)c.c1, (double)c.c5, (double)c.n};
        CAE_TRY(cae_dist_sum(t->dist, sums, 4));
        c.loss_sum = sums[0];
        c.c1 = (size_t)sums[1];
        c.c5 = (size_t)sums[2];
        c.n = (size_t)sums[3];
    }
    cae_probe_result_of(&c, r);
    return 0;
}

/* ---- files ---- */

static void ckpt_path(const tuner *t, uint64_t epoch, char *path, size_t size)
{
    snprintf(path, size, "%s/checkpoint-%llu.safetensors", t->a.output_dir,
             (unsigned long long)epoch);
}

static int save(tuner *t, uint64_t epoch, uint64_t step)
{
    cae_ckpt_meta meta;
    char path[4200], old[4200];
    size_t used = 0;
    if (t->dist->rank != 0) /* the ranks' parameters are identical: rank 0 writes */
        return 0;
    memset(&meta, 0, sizeof meta);
    meta.epoch = epoch;
    meta.step = step;
    meta.seed = (uint64_t)t->a.seed;
    meta.adam_steps = cae_adamw_steps(t->opt);
    for (int i = 0; i < t->argc && used + 2 < sizeof meta.args; i++) {
        int n = snprintf(meta.args + used, sizeof meta.args - used, "%s%s", i ? " " : "",
                         t->argv[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    ckpt_path(t, epoch, path, sizeof path);
    CAE_TRY(cae_checkpoint_save(path, &t->ctx, &t->model.table, &t->model.params,
                                cae_adamw_exp_avg(t->opt), cae_adamw_exp_avg_sq(t->opt), &meta));
    /* the previous epoch's file is superseded (the new one is complete) */
    if (epoch > 1) {
        ckpt_path(t, epoch - 1, old, sizeof old);
        if (unlink(old) != 0 && errno != ENOENT)
            fprintf(stderr, "warning: cannot remove %s: %s\n", old, strerror(errno));
    }
    return 0;
}

/* The best test_acc1 and its epoch from earlier lines of log.txt (resume). */
static void best_from_log(const tuner *t, uint64_t below, double *best, int *best_epoch)
{
    char path[4200], line[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/log.txt", t->a.output_dir);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        const char *a = strstr(line, "\"test_acc1\": "), *e = strstr(line, "\"epoch\": ");
        double acc;
        int ep;
        if (!a || !e || sscanf(a + 13, "%lf", &acc) != 1 || sscanf(e + 9, "%d", &ep) != 1)
            continue;
        if (ep >= 0 && (uint64_t)ep < below && acc > *best) {
            *best = acc;
            *best_epoch = ep;
        }
    }
    fclose(f);
}

/* ---- the program ---- */

static int setup(tuner *t)
{
    cae_args *a = &t->a;
    cae_ctx_options opt = {.gemm = a->gemm};
    int argc = t->argc;
    char **argv = t->argv;

    /* run_class_finetuning.py's defaults where the pretraining ones differ;
     * the built-in Fashion-MNIST run is short (2 epochs, 1 of warmup) */
    if (!cae_args_given(argc, argv, "lr") && !cae_args_given(argc, argv, "blr"))
        a->lr = a->builtin_data ? 2e-3 : 5e-4;
    if (cae_args_given(argc, argv, "blr"))
        a->lr = a->blr;
    if (!cae_args_given(argc, argv, "min_lr"))
        a->min_lr = 1e-6;
    if (!cae_args_given(argc, argv, "warmup_lr"))
        a->warmup_lr = 1e-6;
    if (!cae_args_given(argc, argv, "epochs"))
        a->epochs = a->builtin_data ? 2 : 30;
    if (!cae_args_given(argc, argv, "warmup_epochs"))
        a->warmup_epochs = a->builtin_data ? 1 : 5;
    if (!cae_args_given(argc, argv, "warmup_steps"))
        a->warmup_steps = -1;
    if (!cae_args_given(argc, argv, "batch_size"))
        a->batch_size = a->builtin_data ? 128 : 64;
    if (!cae_args_given(argc, argv, "clip_grad"))
        a->clip_grad = 0; /* official: None */
    if (!cae_args_given(argc, argv, "drop_path"))
        a->model.drop_path = 0.1;
    if (!cae_args_given(argc, argv, "output_dir"))
        a->output_dir = "output-finetune";
    if (!a->finetune && !(a->eval && a->resume)) {
        cae_errorf("--finetune: give the encoder (a checkpoint or weights .safetensors) or 'random'");
        return -1;
    }
    if (a->warmup_epochs < 0 || !(a->layer_decay > 0 && a->layer_decay <= 1) ||
        !(a->smoothing >= 0 && a->smoothing < 1) || !(a->lr >= 0) || !(a->init_scale >= 0)) {
        cae_errorf("--warmup_epochs %d / --layer_decay %g / --smoothing %g / --lr %g / "
                   "--init_scale %g: out of range", a->warmup_epochs, a->layer_decay, a->smoothing,
                   a->lr, a->init_scale);
        return -1;
    }
    a->model.pixel_target = 1;
    /* masking is pretraining's: any valid count, so the check passes */
    if (!cae_args_given(argc, argv, "num_mask_patches") && a->model.patch_size > 0) {
        int g = a->model.input_size / a->model.patch_size;
        a->model.num_mask_patches = g * g > 1 ? g * g / 2 : 1;
    }
    CAE_TRY(cae_config_finish(&a->model));
    t->B = (size_t)a->batch_size;
    t->S = (size_t)a->model.input_size;
    if (t->dist->rank == 0)
        CAE_TRY(cae_output_dir_make(a->output_dir));
    CAE_TRY(cae_dataset_open_split(&t->train, a->data_path, "train"));
    CAE_TRY(cae_dataset_open_split(&t->val, a->data_path, "val"));
    t->K = a->nb_classes > 0 ? (size_t)a->nb_classes : cae_dataset_num_classes(t->train);
    if (cae_dataset_len(t->train) < t->B) {
        cae_errorf("--batch_size %zu: more than the %zu training images", t->B,
                   cae_dataset_len(t->train));
        return -1;
    }
    opt.device_slot = t->dist->device_slot;
    if (t->dist->world > 1)
        opt.host_threads = t->dist->host_threads;
    CAE_TRY(cae_ctx_init(&t->ctx, &opt));
    t->have_ctx = 1;
    if (t->dist->world > 1)
        CAE_TRY(cae_dist_device_table(t->dist, &t->ctx));
    printf("device: %s (%s)\nmodel: input %d patch %d, encoder %dx%d, %d heads, mlp %d, layer "
           "scale %g, drop path %g; mean pooling, fc_norm, head of %zu classes\n"
           "train: %s\nval: %s\n",
           t->ctx.device_name, t->ctx.platform_name, a->model.input_size, a->model.patch_size,
           a->model.embed_dim, a->model.depth, a->model.num_heads, a->model.mlp_hidden,
           a->model.layer_scale_init_value, a->model.drop_path, t->K,
           cae_dataset_describe(t->train), cae_dataset_describe(t->val));
    CAE_TRY(cae_ft_init(&t->model, &t->ctx, &a->model, t->K, t->B));
    t->have_model = 1;
    printf("parameters: %zu in %zu tensors; activations %.1f MiB\n", t->model.table.total,
           t->model.table.n, (double)t->model.act_bytes / 1048576.0);
    CAE_TRY(cae_ft_load(&t->model, a->finetune ? a->finetune : "random", (uint64_t)a->seed,
                        a->init_scale, stdout));
    if (a->finetune && strcmp(a->finetune, "random") == 0)
        printf("encoder weights: random (the pretraining model's initialization)\n");
    CAE_TRY(cae_adamw_new(&t->opt, &t->ctx, &t->model.table, &t->model.params, &t->model.grads));
    CAE_TRY(cae_alloc(&t->ctx, 4, &t->norm_mem));
    t->lr_scale = calloc(t->model.table.n, sizeof *t->lr_scale);
    t->images = calloc(t->B * 3 * t->S * t->S, sizeof *t->images);
    t->targets = calloc(t->B * t->K, sizeof *t->targets);
    t->logits = calloc(t->B * t->K, sizeof *t->logits);
    t->labels = calloc(t->B, sizeof *t->labels);
    t->batch_idx = calloc(t->B, sizeof *t->batch_idx);
    t->batch_seeds = calloc(t->B, sizeof *t->batch_seeds);
    /* --num_workers loader threads (at least 1, at most 64 and the batch) */
    t->n_workers = a->num_workers < 1 ? 1 : a->num_workers > 64 ? 64 : a->num_workers;
    if ((size_t)t->n_workers > t->B)
        t->n_workers = (int)t->B;
    t->loaders = calloc((size_t)t->n_workers, sizeof *t->loaders);
    if (!t->lr_scale || !t->images || !t->targets || !t->logits || !t->labels || !t->batch_idx ||
        !t->batch_seeds || !t->loaders) {
        cae_errorf("out of host memory");
        return -1;
    }
    for (int w = 0; w < t->n_workers; w++) {
        t->loaders[w].dec = cae_decoder_new();
        t->loaders[w].aug = cae_augment_scratch_new();
        if (!t->loaders[w].dec || !t->loaders[w].aug) {
            cae_errorf("out of host memory for the loaders");
            return -1;
        }
    }
    cae_layer_decay_scales(&t->model.table, a->model.depth, a->layer_decay, t->lr_scale);
    if (t->dist->world > 1) {
        /* every rank starts from the same parameters (same seed or file): checked */
        CAE_TRY(cae_dist_check_sync(t->dist, &t->ctx, &t->model.table, &t->model.params, 0));
        CAE_TRY(cae_allreduce_new(&t->ar, &t->ctx, &t->model.table, &t->model.grads,
                                  t->dist->comm, (size_t)25 << 20));
    }
    fflush(stdout);
    if (t->dist->rank != 0)
        return 0;
    t->log = cae_output_open(a->output_dir, "log.txt");
    t->metrics = cae_output_open(a->output_dir, "metrics.jsonl");
    return t->log && t->metrics ? 0 : -1;
}

static int run(tuner *t)
{
    cae_args *a = &t->a;
    cae_cls_train_cfg aug;
    cae_mixup_cfg mix = {0};
    const size_t world = (size_t)t->dist->world, rank = (size_t)t->dist->rank;
    const size_t G = t->B * world; /* the global batch: rank r takes its r-th slice */
    size_t n_train = cae_dataset_len(t->train), steps = n_train / G; /* drop_last */
    size_t *perm = NULL;
    cae_schedule sched = {0};
    cae_adamw_hparams h = {0};
    double best = -1, t_start = cae_now_ms(), scale = (double)G / 256.0;
    int best_epoch = -1, rc = -1;
    uint64_t step = 0, start_epoch = 0;
    char found[4200];

    perm = malloc(n_train * sizeof *perm);
    if (!perm) {
        cae_errorf("out of host memory");
        goto out;
    }
    if (a->eval) {
        cae_probe_result ev;
        if (a->resume && cae_checkpoint_load(a->resume, &t->ctx, &t->model.table,
                                             &t->model.params, NULL, NULL, NULL) != 0)
            goto out;
        if (evaluate(t, &ev) != 0)
            goto out;
        printf("Accuracy of the network on the %zu test images: %.1f%% (acc5 %.1f%%, loss %.4f)\n",
               ev.n, ev.acc1, ev.acc5, ev.loss);
        if (rank != 0) {
            rc = 0;
            goto out;
        }
        fprintf(t->log, "{\"test_loss\": %.8g, \"test_acc1\": %.6g, \"test_acc5\": %.6g}\n",
                ev.loss, ev.acc1, ev.acc5);
        rc = fflush(t->log) == 0 ? 0 : -1;
        goto out;
    }
    /* resume: --resume FILE, else the newest checkpoint of output_dir */
    if (a->resume || a->auto_resume) {
        const char *from = a->resume;
        if (!from) {
            int r = cae_checkpoint_latest(a->output_dir, &t->model.table, found, sizeof found);
            if (r < 0)
                goto out;
            from = r == 0 ? found : NULL;
        }
        if (from) {
            cae_ckpt_meta meta;
            if (cae_checkpoint_load(from, &t->ctx, &t->model.table, &t->model.params,
                                    cae_adamw_exp_avg(t->opt), cae_adamw_exp_avg_sq(t->opt),
                                    &meta) != 0)
                goto out;
            cae_adamw_set_steps(t->opt, meta.adam_steps);
            start_epoch = meta.epoch;
            step = meta.step;
            best_from_log(t, start_epoch, &best, &best_epoch);
            printf("Resume checkpoint %s: epoch %llu done, step %llu\n", from,
                   (unsigned long long)meta.epoch, (unsigned long long)meta.step);
        }
    }
    /* timm's create_transform(is_training=True) and Mixup, as the official script */
    /* (RandomCrop(S, padding 4) in place of RandomResizedCrop for S <= 32) */
    cae_cls_train_cfg_default_for(&aug, (int)t->S);
    aug.crop_min = a->crop_min_size;
    aug.crop_max = a->crop_max_size;
    aug.color_jitter = a->color_jitter;
    aug.reprob = a->reprob;
    aug.imagenet_mean_std = a->imagenet_default_mean_and_std;
    if (cae_filter_parse(a->train_interpolation, &aug.interp) != 0 ||
        cae_randaug_parse(a->aa, &aug.aa) != 0 || cae_cls_train_check(&aug) != 0)
        goto out;
    mix.mixup_alpha = a->mixup;
    mix.cutmix_alpha = a->cutmix;
    mix.prob = a->mixup_prob;
    mix.switch_prob = a->mixup_switch_prob;
    mix.smoothing = a->smoothing;
    mix.num_classes = (int)t->K;
    if (cae_mixup_check(&mix) != 0)
        goto out;
    if (aug.crop_padding > 0)
        printf("training transform: RandomCrop(%d, padding %d)", aug.input_size, aug.crop_padding);
    else
        printf("training transform: RandomResizedCrop(%d, scale %g-%g, %s)", aug.input_size,
               aug.crop_min, aug.crop_max, a->train_interpolation);
    printf(" + flip, --aa %s, --reprob %g; mixup %g, cutmix %g (prob %g, switch %g), "
           "smoothing %g\n",
           aug.aa.num_layers > 0 ? a->aa : "none", aug.reprob, mix.mixup_alpha,
           mix.cutmix_alpha, mix.prob, mix.switch_prob, mix.smoothing);
    sched.base = a->lr * scale;
    sched.final = a->min_lr * scale;
    sched.epochs = (size_t)a->epochs;
    sched.niter_per_ep = steps;
    sched.warmup_epochs = (size_t)a->warmup_epochs;
    sched.warmup_steps = a->warmup_steps;
    sched.start_warmup = a->warmup_lr * scale;
    h.weight_decay = a->weight_decay;
    h.beta1 = 0.9;
    h.beta2 = 0.999;
    h.eps = a->opt_eps;
    h.clip_grad = a->clip_grad;
    printf("LR = %.8f (%g * global batch %zu / 256), min_lr %.3g, warmup_lr %.3g; AdamW, weight decay "
           "%g, layer decay %g (%d layers), smoothing %g, drop path %g, clip_grad %s\n"
           "%d epochs (%d warmup) of %zu steps\n",
           sched.base, a->lr, G, sched.final, sched.start_warmup, a->weight_decay,
           a->layer_decay, a->model.depth + 2, a->smoothing, a->model.drop_path,
           a->clip_grad > 0 ? "on" : "none", a->epochs, a->warmup_epochs, steps);
    fflush(stdout);
    for (uint64_t epoch = start_epoch; epoch < (uint64_t)a->epochs; epoch++) {
        cae_rng r;
        double loss_sum = 0, lr = 0, t0 = cae_now_ms();
        size_t first, steps_run;
        cae_probe_result ev;
        cae_rng_seed(&r, (uint64_t)a->seed * 1000003ULL + epoch);
        for (size_t i = 0; i < n_train; i++)
            perm[i] = i;
        for (size_t i = n_train; i > 1; i--) {
            size_t j = (size_t)cae_rng_int(&r, 0, (int64_t)i - 1), tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        /* a run resumed mid-epoch skips the steps done (and their draws) */
        first = (size_t)(step - epoch * steps);
        if (first >= steps) {
            cae_errorf("checkpoint step %llu does not lie in epoch %llu of %zu steps",
                       (unsigned long long)step, (unsigned long long)epoch, steps);
            goto out;
        }
        for (size_t i = 0; i < first * G; i++)
            (void)cae_rng_next(&r);
        for (size_t s = first; s < steps; s++, step++) {
            double loss;
            if (a->stop_after_steps > 0 && step >= (uint64_t)a->stop_after_steps) {
                /* --stop_after_steps: checkpoint here and stop (tests resume) */
                if (save(t, epoch, step) != 0)
                    goto out;
                printf("stopped after step %llu (--stop_after_steps)\n", (unsigned long long)step);
                rc = 0;
                goto out;
            }
            lr = cae_schedule_at(&sched, step);
            h.lr = lr;
            /* every rank draws the whole global batch's seeds and keeps its
             * slice, so a sample's augmentation does not depend on the ranks */
            for (size_t g = 0; g < G; g++) {
                uint64_t seed = cae_rng_next(&r);
                if (g / t->B != rank)
                    continue;
                t->batch_idx[g - rank * t->B] = perm[s * G + g];
                t->batch_seeds[g - rank * t->B] = seed;
            }
            if (load_batch(t, t->train, &aug, t->B) != 0)
                goto out;
            /* mixed images and smoothed, mixed targets within each rank's
             * batch (as DDP); draws from (seed, step, rank) */
            if (cae_mixup_apply(&mix, ((uint64_t)a->seed * 0x9e3779b97f4a7c15ULL ^ step) + rank,
                                t->images, t->B, (int)t->S, t->labels, t->targets, NULL) != 0)
                goto out;
            /* drop path per rank from (seed, rank); the gradients averaged over
             * ranks before the update (clipping, if on, sees the average) */
            if (cae_ft_train_step(&t->model, t->images, t->targets,
                                  (uint64_t)a->seed + rank * 0x9e3779b97f4a7c15ULL, step,
                                  &loss) != 0)
                goto out;
            if (world > 1) {
                if (cae_allreduce_finish(t->ar) != 0 || cae_dist_sum(t->dist, &loss, 1) != 0)
                    goto out;
                loss /= (double)world;
            }
            if (cae_adamw_step_scaled(t->opt, &h, t->lr_scale, (cae_buf){t->norm_mem, 0}) != 0)
                goto out;
            if (!isfinite(loss)) {
                cae_errorf("epoch %llu step %zu: loss is %g; stopping", (unsigned long long)epoch,
                           s, loss);
                goto out;
            }
            loss_sum += loss;
            if ((s + 1) % 50 == 0 || s + 1 == steps) {
                printf("Epoch: [%llu] [%zu/%zu] loss %.4f (mean %.4f) lr %.6g | %.1f s\n",
                       (unsigned long long)epoch, s + 1, steps, loss,
                       loss_sum / (double)(s + 1 - first), lr, (cae_now_ms() - t0) / 1e3);
                fflush(stdout);
            }
        }
        steps_run = steps - first;
        if (evaluate(t, &ev) != 0)
            goto out;
        if (ev.acc1 > best) {
            best = ev.acc1;
            best_epoch = (int)epoch;
        }
        if (rank != 0) { /* rank 0 reports and writes */
            if (save(t, epoch + 1, step) != 0)
                goto out;
            continue;
        }
        printf("epoch %llu: train_loss %.4f lr %.5g | test_loss %.4f acc1 %.2f%% acc5 %.2f%% on %zu "
               "images | %.1f s | Max accuracy: %.2f%%\n",
               (unsigned long long)epoch, loss_sum / (double)steps_run, lr, ev.loss, ev.acc1, ev.acc5,
               ev.n, (cae_now_ms() - t0) / 1e3, best);
        fflush(stdout);
        fprintf(t->log,
                "{\"train_lr\": %.8g, \"train_loss\": %.8g, \"test_loss\": %.8g, \"test_acc1\": "
                "%.6g, \"test_acc5\": %.6g, \"epoch\": %llu, \"n_parameters\": %zu}\n",
                lr, loss_sum / (double)steps_run, ev.loss, ev.acc1, ev.acc5, (unsigned long long)epoch,
                t->model.table.total);
        fprintf(t->metrics,
                "{\"epoch\": %llu, \"step\": %llu, \"train_loss\": %.8g, \"lr\": %.8g, "
                "\"test_loss\": %.8g, \"test_acc1\": %.6g, \"test_acc5\": %.6g, \"epoch_s\": %.3f}\n",
                (unsigned long long)epoch, (unsigned long long)step, loss_sum / (double)steps_run, lr,
                ev.loss, ev.acc1, ev.acc5, (cae_now_ms() - t0) / 1e3);
        if (fflush(t->log) != 0 || fflush(t->metrics) != 0) {
            cae_errorf("--output_dir %s: cannot write the logs: %s", a->output_dir, strerror(errno));
            goto out;
        }
        if (save(t, epoch + 1, step) != 0)
            goto out;
    }
    if (rank != 0) {
        rc = 0;
        goto out;
    }
    printf("Max accuracy: %.2f%% at epoch %d (wall time %.1f s)\n", best, best_epoch,
           (cae_now_ms() - t_start) / 1e3);
    fprintf(t->log, "{\"max_accuracy\": %.6g, \"best_epoch\": %d}\n", best, best_epoch);
    rc = fflush(t->log) == 0 ? 0 : -1;
out:
    free(perm);
    return rc;
}

static void teardown(tuner *t)
{
    if (t->log)
        fclose(t->log);
    if (t->metrics)
        fclose(t->metrics);
    cae_adamw_free(t->opt);
    if (t->ar)
        cae_allreduce_free(t->ar);
    cae_release(&t->norm_mem);
    if (t->have_model)
        cae_ft_free(&t->model);
    if (t->have_ctx)
        cae_ctx_free(&t->ctx);
    cae_dataset_free(t->train);
    cae_dataset_free(t->val);
    free(t->lr_scale);
    free(t->images);
    free(t->targets);
    free(t->logits);
    free(t->labels);
    free(t->batch_idx);
    free(t->batch_seeds);
    for (int w = 0; t->loaders && w < t->n_workers; w++) {
        cae_image_free(&t->loaders[w].img);
        if (t->loaders[w].dec)
            cae_decoder_free(t->loaders[w].dec);
        if (t->loaders[w].aug)
            cae_augment_scratch_free(t->loaders[w].aug);
    }
    free(t->loaders);
}

/* Under mpirun every rank runs this; only rank 0 prints (as the official
 * setup_for_distributed) and writes. */
static int run_main(tuner *t, int argc, char **argv)
{
    int rc;
    if (cae_args_parse(&t->a, argc, argv) != 0)
        return 2;
    if (t->a.help) {
        cae_args_usage(stdout, "cae-cl-finetune",
                       "full fine-tuning of a CAE encoder (official tools/run_class_finetuning.py "
                       "flags);\nwithout --data_path: Fashion-MNIST's 60k/10k split with the "
                       "built-in model;\nunder mpirun: data parallel, --batch_size per rank");
        return 0;
    }
    if (t->a.list_devices)
        return cae_list_devices(stdout) == 0 ? 0 : 1;
    t->argc = argc;
    t->argv = argv;
    rc = setup(t) == 0 && run(t) == 0 ? 0 : 1;
    if (rc != 0 && t->dist->world > 1)
        cae_dist_abort(t->dist, 1, "fine-tuning failed (the cause is above)");
    teardown(t);
    return rc;
}

int main(int argc, char **argv)
{
    static tuner t;
    static cae_dist dist;
    int rc;
    if (cae_dist_init(&dist, &argc, &argv) != 0)
        return 1;
    t.dist = &dist;
    if (dist.world > 1)
        cae_error_set_rank(dist.rank);
    if (dist.rank != 0 && freopen("/dev/null", "w", stdout) == NULL)
        cae_errorf("warning: cannot silence rank %d's progress output", dist.rank);
    rc = run_main(&t, argc, argv);
    cae_dist_finalize(&dist);
    return rc;
}

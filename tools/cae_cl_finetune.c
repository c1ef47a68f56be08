/* cae-cl-finetune: full fine-tuning of a CAE encoder as a classifier on one
 * device, the C counterpart of the official tools/run_class_finetuning.py
 * (same flags).
 *
 * Model: the encoder over all patches, the mean of the patch tokens,
 * fc_norm and a linear head (src/eval/finetune_model.h), from --finetune CKPT
 * (encoder.* keys, prefix stripped) or 'random'. AdamW with layer-wise lr
 * decay (src/eval/layer_decay.h), weight decay except for 1-D tensors, biases
 * and cls_token; the lr (like min_lr and warmup_lr) is scaled by global
 * batch / 256 as the official script does (--blr, when given, replaces
 * --lr as that base); cosine schedule with warmup per step. Data: timm's
 * training transform (RandomResizedCrop, flip, RandAugment --aa, random
 * erasing --reprob) and Mixup/CutMix (--mixup --cutmix --mixup_prob
 * --mixup_switch_prob) with label smoothing (--smoothing); loss: soft-target
 * cross-entropy. Images are decoded and transformed by src/data/loader_cls.c
 * over --num_workers threads, each from its own seed.
 *
 * Every epoch: evaluation (top-1, top-5, loss on DIR/val, or Fashion-MNIST's
 * 10k test images without --data_path) with resize to input_size/0.875 and
 * a center crop; a line in log.txt (official keys) and metrics.jsonl; an
 * atomic checkpoint-<epoch>.safetensors (model under the fine-tuning keys,
 * AdamW moments, epoch/step metadata) from which a restart continues
 * identically (--auto_resume, the default, or --resume FILE). --eval
 * evaluates --resume (or --finetune) without training. File names, log
 * lines and the checkpoint to resume from come from src/train/checkpoint.c
 * and src/train/train_log.c, as for cae-cl-train and the probes.
 */
#include "train/args.h"
#include "train/checkpoint.h"
#include "data/cls_transform.h"
#include "data/loader_cls.h"
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

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One fine-tuning run: what setup() builds and teardown() frees. */
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
    size_t G, steps;         /* global batch (B * world), steps per epoch (drop_last) */
    float *images, *targets, *logits;
    int32_t *labels;
    size_t *batch_idx, *perm;
    uint64_t *batch_seeds;
    cae_cls_loader *loader;  /* --num_workers threads per batch */
    cae_cls_train_cfg aug;   /* the training transform, per image */
    cae_mixup_cfg mix;       /* Mixup/CutMix and label smoothing, per batch */
    cae_schedule sched;
    cae_adamw_hparams h;
    uint64_t start_epoch;    /* the first epoch to run (a resumed run's checkpoint's) */
    uint64_t step;           /* global steps done */
    double best;             /* best test_acc1 so far (-1: none) and its epoch */
    int best_epoch;
    FILE *log, *metrics;     /* rank 0's */
    cae_dist *dist;          /* under mpirun: data parallel, --batch_size per rank */
    cae_allreduce *ar;       /* gradient averages (world > 1) */
} finetuner;

/* ---- evaluation ---- */

/* top-1, top-5 and mean cross-entropy on the val split, counted as the
 * probes count them (src/eval/probe_eval.c) */
static int evaluate(finetuner *t, cae_probe_result *r)
{
    size_t n = cae_dataset_len(t->val);
    cae_probe_counts c = {0};
    cae_cls_source src = {t->val, t->K, (int)t->S, t->a.imagenet_default_mean_and_std, NULL, NULL};
    /* --dist_eval under mpirun: batch b on rank b % world, sums over ranks */
    const int shard = t->a.dist_eval && t->dist->world > 1;
    for (size_t s = 0; s < n; s += t->B) {
        size_t m = n - s < t->B ? n - s : t->B;
        if (shard && (s / t->B) % (size_t)t->dist->world != (size_t)t->dist->rank)
            continue;
        for (size_t i = 0; i < m; i++)
            t->batch_idx[i] = s + i;
        CAE_TRY(cae_cls_loader_load(t->loader, &src, t->batch_idx, NULL, m, t->images, t->labels));
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

/* ---- checkpoints ---- */

/* checkpoint-<epoch> (rank 0: the ranks' parameters are identical); the
 * previous epoch's file is superseded once the new one is complete. */
static int save(finetuner *t, uint64_t epoch, uint64_t step)
{
    cae_ckpt_meta meta;
    char path[4200];
    if (t->dist->rank != 0)
        return 0;
    memset(&meta, 0, sizeof meta);
    meta.epoch = epoch;
    meta.step = step;
    meta.seed = (uint64_t)t->a.seed;
    meta.adam_steps = cae_adamw_steps(t->opt);
    (void)cae_checkpoint_args(meta.args, sizeof meta.args, t->argc, t->argv);
    CAE_TRY(cae_checkpoint_epoch_path(path, sizeof path, t->a.output_dir, epoch));
    CAE_TRY(cae_checkpoint_save(path, &t->ctx, &t->model.table, &t->model.params,
                                cae_adamw_exp_avg(t->opt), cae_adamw_exp_avg_sq(t->opt), &meta));
    if (epoch > 1)
        cae_checkpoint_remove(t->a.output_dir, epoch - 1);
    return 0;
}

/* --resume FILE, else (--auto_resume) the newest checkpoint of output_dir:
 * the model, AdamW's state and the step; the best accuracy so far from the
 * earlier epochs' lines of log.txt. */
static int resume(finetuner *t)
{
    cae_args *a = &t->a;
    char found[4200];
    const char *from;
    cae_ckpt_meta meta;
    CAE_TRY(cae_checkpoint_resume_from(a->resume, a->auto_resume, a->output_dir, &t->model.table,
                                       found, sizeof found, &from));
    if (!from)
        return 0;
    CAE_TRY(cae_checkpoint_load(from, &t->ctx, &t->model.table, &t->model.params,
                                cae_adamw_exp_avg(t->opt), cae_adamw_exp_avg_sq(t->opt), &meta));
    cae_adamw_set_steps(t->opt, meta.adam_steps);
    t->start_epoch = meta.epoch;
    t->step = meta.step;
    cae_cls_log_best_before(a->output_dir, meta.epoch, &t->best, &t->best_epoch);
    printf("Resume checkpoint %s: epoch %llu done, step %llu\n", from,
           (unsigned long long)meta.epoch, (unsigned long long)meta.step);
    return 0;
}

/* ---- setup ---- */

/* run_class_finetuning.py's defaults where the pretraining ones differ;
 * the built-in Fashion-MNIST run is short (2 epochs, 1 of warmup) */
static void finetune_defaults(cae_args *a, int argc, char **argv)
{
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
}

/* The flags fine-tuning adds to the model's, and the model's own. */
static int check_flags(finetuner *t)
{
    cae_args *a = &t->a;
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
    return cae_config_finish_encoder(&a->model);
}

/* The output folder (rank 0) and both splits. */
static int open_data(finetuner *t)
{
    cae_args *a = &t->a;
    t->B = (size_t)a->batch_size;
    t->S = (size_t)a->model.input_size;
    if (t->dist->rank == 0)
        CAE_TRY(cae_output_dir_make(a->output_dir));
    CAE_TRY(cae_dataset_open_splits(&t->train, &t->val, a->data_path));
    t->K = a->nb_classes > 0 ? (size_t)a->nb_classes : cae_dataset_num_classes(t->train);
    if (cae_dataset_len(t->train) < t->B) {
        cae_errorf("--batch_size %zu: more than the %zu training images", t->B,
                   cae_dataset_len(t->train));
        return -1;
    }
    t->G = t->B * (size_t)t->dist->world;
    t->steps = cae_dataset_len(t->train) / t->G;
    return 0;
}

/* The device, the model (from --finetune) and AdamW. */
static int open_model(finetuner *t)
{
    cae_args *a = &t->a;
    cae_ctx_options opt = {.gemm = a->gemm};
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
    return cae_alloc(&t->ctx, 4, &t->norm_mem);
}

/* One batch's host buffers, the epoch's permutation, the loader threads
 * (at least 1, at most 64 and the batch) and the layer-wise lr scales. */
static int alloc_host(finetuner *t)
{
    t->lr_scale = calloc(t->model.table.n, sizeof *t->lr_scale);
    t->images = calloc(t->B * 3 * t->S * t->S, sizeof *t->images);
    t->targets = calloc(t->B * t->K, sizeof *t->targets);
    t->logits = calloc(t->B * t->K, sizeof *t->logits);
    t->labels = calloc(t->B, sizeof *t->labels);
    t->batch_idx = calloc(t->B, sizeof *t->batch_idx);
    t->batch_seeds = calloc(t->B, sizeof *t->batch_seeds);
    t->perm = calloc(cae_dataset_len(t->train), sizeof *t->perm);
    if (!t->lr_scale || !t->images || !t->targets || !t->logits || !t->labels || !t->batch_idx ||
        !t->batch_seeds || !t->perm) {
        cae_errorf("out of host memory");
        return -1;
    }
    CAE_TRY(cae_cls_loader_new(&t->loader, t->a.num_workers, t->B));
    cae_layer_decay_scales(&t->model.table, t->a.model.depth, t->a.layer_decay, t->lr_scale);
    return 0;
}

static int setup(finetuner *t)
{
    finetune_defaults(&t->a, t->argc, t->argv);
    CAE_TRY(check_flags(t));
    CAE_TRY(open_data(t));
    CAE_TRY(open_model(t));
    CAE_TRY(alloc_host(t));
    if (t->dist->world > 1) {
        /* every rank starts from the same parameters (same seed or file): checked */
        CAE_TRY(cae_dist_check_sync(t->dist, &t->ctx, &t->model.table, &t->model.params, 0));
        CAE_TRY(cae_allreduce_new(&t->ar, &t->ctx, &t->model.table, &t->model.grads,
                                  t->dist->comm, (size_t)25 << 20));
    }
    fflush(stdout);
    if (t->dist->rank != 0)
        return 0;
    t->log = cae_output_open(t->a.output_dir, "log.txt");
    t->metrics = cae_output_open(t->a.output_dir, "metrics.jsonl");
    return t->log && t->metrics ? 0 : -1;
}

/* timm's create_transform(is_training=True) and Mixup, as the official
 * script (RandomCrop(S, padding 4) in place of RandomResizedCrop for
 * S <= 32), checked and described. */
static int train_transforms(finetuner *t)
{
    cae_args *a = &t->a;
    cae_cls_train_cfg *aug = &t->aug;
    cae_mixup_cfg *mix = &t->mix;
    cae_cls_train_cfg_default_for(aug, (int)t->S);
    aug->crop_min = a->crop_min_size;
    aug->crop_max = a->crop_max_size;
    aug->color_jitter = a->color_jitter;
    aug->reprob = a->reprob;
    aug->imagenet_mean_std = a->imagenet_default_mean_and_std;
    if (cae_filter_parse(a->train_interpolation, &aug->interp) != 0 ||
        cae_randaug_parse(a->aa, &aug->aa) != 0 || cae_cls_train_check(aug) != 0)
        return -1;
    memset(mix, 0, sizeof *mix);
    mix->mixup_alpha = a->mixup;
    mix->cutmix_alpha = a->cutmix;
    mix->prob = a->mixup_prob;
    mix->switch_prob = a->mixup_switch_prob;
    mix->smoothing = a->smoothing;
    mix->num_classes = (int)t->K;
    CAE_TRY(cae_mixup_check(mix));
    if (aug->crop_padding > 0)
        printf("training transform: RandomCrop(%d, padding %d)", aug->input_size, aug->crop_padding);
    else
        printf("training transform: RandomResizedCrop(%d, scale %g-%g, %s)", aug->input_size,
               aug->crop_min, aug->crop_max, a->train_interpolation);
    printf(" + flip, --aa %s, --reprob %g; mixup %g, cutmix %g (prob %g, switch %g), "
           "smoothing %g\n",
           aug->aa.num_layers > 0 ? a->aa : "none", aug->reprob, mix->mixup_alpha,
           mix->cutmix_alpha, mix->prob, mix->switch_prob, mix->smoothing);
    return 0;
}

/* The lr schedule (lr, min_lr and warmup_lr scaled by global batch / 256)
 * and AdamW's hyperparameters, described. */
static void optimizer_plan(finetuner *t)
{
    cae_args *a = &t->a;
    double scale = (double)t->G / 256.0;
    memset(&t->sched, 0, sizeof t->sched);
    t->sched.base = a->lr * scale;
    t->sched.final = a->min_lr * scale;
    t->sched.epochs = (size_t)a->epochs;
    t->sched.niter_per_ep = t->steps;
    t->sched.warmup_epochs = (size_t)a->warmup_epochs;
    t->sched.warmup_steps = a->warmup_steps;
    t->sched.start_warmup = a->warmup_lr * scale;
    memset(&t->h, 0, sizeof t->h);
    t->h.weight_decay = a->weight_decay;
    t->h.beta1 = 0.9;
    t->h.beta2 = 0.999;
    t->h.eps = a->opt_eps;
    t->h.clip_grad = a->clip_grad;
    printf("LR = %.8f (%g * global batch %zu / 256), min_lr %.3g, warmup_lr %.3g; AdamW, weight decay "
           "%g, layer decay %g (%d layers), smoothing %g, drop path %g, clip_grad %s\n"
           "%d epochs (%d warmup) of %zu steps\n",
           t->sched.base, a->lr, t->G, t->sched.final, t->sched.start_warmup, a->weight_decay,
           a->layer_decay, a->model.depth + 2, a->smoothing, a->model.drop_path,
           a->clip_grad > 0 ? "on" : "none", a->epochs, a->warmup_epochs, t->steps);
    fflush(stdout);
}

/* ---- training ---- */

/* The epoch's permutation and its rng (a function of (seed, epoch)), moved
 * past the draws of the first `first` steps (a run resumed mid-epoch). */
static void epoch_order(finetuner *t, uint64_t epoch, size_t first, cae_rng *r)
{
    size_t n = cae_dataset_len(t->train);
    cae_rng_seed(r, (uint64_t)t->a.seed * 1000003ULL + epoch);
    for (size_t i = 0; i < n; i++)
        t->perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cae_rng_int(r, 0, (int64_t)i - 1), tmp = t->perm[i - 1];
        t->perm[i - 1] = t->perm[j];
        t->perm[j] = tmp;
    }
    for (size_t i = 0; i < first * t->G; i++)
        (void)cae_rng_next(r);
}

/* Step s of the epoch at t->step: load this rank's slice of the global
 * batch, mix, forward and backward, average over ranks, AdamW; *loss is
 * the batch's (rank-averaged) loss. */
static int train_step(finetuner *t, cae_rng *r, size_t s, double lr, double *loss)
{
    const cae_args *a = &t->a;
    const size_t rank = (size_t)t->dist->rank, world = (size_t)t->dist->world;
    cae_cls_source src = {t->train, t->K, (int)t->S, a->imagenet_default_mean_and_std, &t->aug,
                          NULL};
    /* every rank draws the whole global batch's seeds and keeps its
     * slice, so a sample's augmentation does not depend on the ranks */
    for (size_t g = 0; g < t->G; g++) {
        uint64_t seed = cae_rng_next(r);
        if (g / t->B != rank)
            continue;
        t->batch_idx[g - rank * t->B] = t->perm[s * t->G + g];
        t->batch_seeds[g - rank * t->B] = seed;
    }
    CAE_TRY(cae_cls_loader_load(t->loader, &src, t->batch_idx, t->batch_seeds, t->B, t->images,
                                t->labels));
    /* mixed images and smoothed, mixed targets within each rank's batch
     * (as DDP); draws from (seed, step, rank) */
    CAE_TRY(cae_mixup_apply(&t->mix, ((uint64_t)a->seed * 0x9e3779b97f4a7c15ULL ^ t->step) + rank,
                            t->images, t->B, (int)t->S, t->labels, t->targets, NULL));
    /* drop path per rank from (seed, rank); the gradients averaged over
     * ranks before the update (clipping, if on, sees the average) */
    CAE_TRY(cae_ft_train_step(&t->model, t->images, t->targets,
                              (uint64_t)a->seed + rank * 0x9e3779b97f4a7c15ULL, t->step, loss));
    if (world > 1) {
        CAE_TRY(cae_allreduce_finish(t->ar));
        CAE_TRY(cae_dist_sum(t->dist, loss, 1));
        *loss /= (double)world;
    }
    t->h.lr = lr;
    return cae_adamw_step_scaled(t->opt, &t->h, t->lr_scale, (cae_buf){t->norm_mem, 0});
}

/* What an epoch's training left for its log lines. */
typedef struct {
    double loss_mean, lr, t0;
} epoch_summary;

/* The rest of epoch's steps: 0, 1 when --stop_after_steps stopped the run
 * (checkpoint written), -1 on error. */
static int train_epoch(finetuner *t, uint64_t epoch, epoch_summary *sum)
{
    size_t first = (size_t)(t->step - epoch * t->steps);
    double loss_sum = 0;
    cae_rng r;
    if (first >= t->steps) {
        cae_errorf("checkpoint step %llu does not lie in epoch %llu of %zu steps",
                   (unsigned long long)t->step, (unsigned long long)epoch, t->steps);
        return -1;
    }
    epoch_order(t, epoch, first, &r);
    for (size_t s = first; s < t->steps; s++, t->step++) {
        double loss;
        if (t->a.stop_after_steps > 0 && t->step >= (uint64_t)t->a.stop_after_steps) {
            /* --stop_after_steps: checkpoint here and stop (tests resume) */
            CAE_TRY(save(t, epoch, t->step));
            printf("stopped after step %llu (--stop_after_steps)\n", (unsigned long long)t->step);
            return 1;
        }
        sum->lr = cae_schedule_at(&t->sched, t->step);
        CAE_TRY(train_step(t, &r, s, sum->lr, &loss));
        if (!isfinite(loss)) {
            cae_errorf("epoch %llu step %zu: loss is %g; stopping", (unsigned long long)epoch, s,
                       loss);
            return -1;
        }
        loss_sum += loss;
        if ((s + 1) % 50 == 0 || s + 1 == t->steps) {
            printf("Epoch: [%llu] [%zu/%zu] loss %.4f (mean %.4f) lr %.6g | %.1f s\n",
                   (unsigned long long)epoch, s + 1, t->steps, loss,
                   loss_sum / (double)(s + 1 - first), sum->lr, (cae_now_ms() - sum->t0) / 1e3);
            fflush(stdout);
        }
    }
    sum->loss_mean = loss_sum / (double)(t->steps - first);
    return 0;
}

/* Rank 0's report of an epoch: the progress line, log.txt, metrics.jsonl. */
static int log_epoch(finetuner *t, uint64_t epoch, const epoch_summary *sum,
                     const cae_probe_result *ev)
{
    printf("epoch %llu: train_loss %.4f lr %.5g | test_loss %.4f acc1 %.2f%% acc5 %.2f%% on %zu "
           "images | %.1f s | Max accuracy: %.2f%%\n",
           (unsigned long long)epoch, sum->loss_mean, sum->lr, ev->loss, ev->acc1, ev->acc5, ev->n,
           (cae_now_ms() - sum->t0) / 1e3, t->best);
    fflush(stdout);
    return cae_cls_log_epoch(t->log, t->metrics, t->a.output_dir,
                             &(cae_cls_epoch_log){epoch, t->step, sum->lr, sum->loss_mean, ev->loss,
                                                  ev->acc1, ev->acc5,
                                                  (cae_now_ms() - sum->t0) / 1e3,
                                                  t->model.table.total});
}

/* --eval: the accuracy of --resume (or --finetune) without training. */
static int eval_only(finetuner *t)
{
    cae_probe_result ev;
    if (t->a.resume)
        CAE_TRY(cae_checkpoint_load(t->a.resume, &t->ctx, &t->model.table, &t->model.params, NULL,
                                    NULL, NULL));
    CAE_TRY(evaluate(t, &ev));
    printf("Accuracy of the network on the %zu test images: %.1f%% (acc5 %.1f%%, loss %.4f)\n",
           ev.n, ev.acc1, ev.acc5, ev.loss);
    if (t->dist->rank != 0)
        return 0;
    return cae_cls_log_eval(t->log, ev.loss, ev.acc1, ev.acc5);
}

static int run(finetuner *t)
{
    const int r0 = t->dist->rank == 0; /* rank 0 reports and writes */
    double t_start = cae_now_ms();
    t->best = -1;
    t->best_epoch = -1;
    if (t->a.eval)
        return eval_only(t);
    CAE_TRY(resume(t));
    CAE_TRY(train_transforms(t));
    optimizer_plan(t);
    for (uint64_t epoch = t->start_epoch; epoch < (uint64_t)t->a.epochs; epoch++) {
        epoch_summary sum = {0, 0, cae_now_ms()};
        cae_probe_result ev;
        int rc = train_epoch(t, epoch, &sum);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
        CAE_TRY(evaluate(t, &ev));
        if (ev.acc1 > t->best) {
            t->best = ev.acc1;
            t->best_epoch = (int)epoch;
        }
        if (r0)
            CAE_TRY(log_epoch(t, epoch, &sum, &ev));
        CAE_TRY(save(t, epoch + 1, t->step));
    }
    if (!r0)
        return 0;
    printf("Max accuracy: %.2f%% at epoch %d (wall time %.1f s)\n", t->best, t->best_epoch,
           (cae_now_ms() - t_start) / 1e3);
    return cae_cls_log_best(t->log, t->best, t->best_epoch);
}

static void teardown(finetuner *t)
{
    void *host[] = {t->lr_scale, t->images,      t->targets,     t->logits,
                    t->labels,   t->batch_idx,   t->batch_seeds, t->perm};
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
    cae_cls_loader_free(t->loader);
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

/* Under mpirun every rank runs this; only rank 0 prints (as the official
 * setup_for_distributed) and writes. */
static int run_main(finetuner *t, int argc, char **argv)
{
    int rc;
    if (cae_args_parse(&t->a, argc, argv) != 0 || cae_args_check_probe(&t->a, NULL) != 0)
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
    static finetuner t;
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

/* cae-cl-train: CAE pretraining on one device, the C counterpart of the
 * official tools/run_pretraining.py (same flags).
 *
 * Without --data_path it trains a small model on Fashion-MNIST (the Debian
 * package dataset-fashion-mnist) and writes ./output: the README's main
 * command. Per step: load a batch (worker threads prepare it ahead), label
 * the masked patches (DALL-E tokenizer, or the pixel target), forward and
 * backward, stop on a non-finite loss, AdamW with clipping, log. Per epoch:
 * log.txt and, every --save_ckpt_freq epochs and at the end, a checkpoint
 * (with the pixel target also a reconstruction picture, train/reconstruct.h).
 * SIGINT/SIGTERM finish the current step, write a checkpoint and exit.
 *
 * Under mpirun every rank trains on its shard of each epoch and the
 * gradients are averaged across ranks (src/mpi/allreduce.c) while the backward
 * pass still runs; loss terms are averaged for the log; rank 0 writes logs
 * and checkpoints; a failing rank stops them all (MPI_Abort).
 */
#include "mpi/allreduce.h"
#include "train/args.h"
#include "train/checkpoint.h"
#include "data/loader_args.h"
#include "mpi/dist.h"
#include "runtime/errors.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/reconstruct.h"
#include "safetensors/safetensors.h"
#include "train/schedule.h"
#include "tokenizer/dalle.h"
#include "train/train_log.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* a stop every rank agrees on (non-finite loss): no abort needed */
#define STOP_TOGETHER (-2)
/* the same, where another rank says why and carries the failure: this one
 * ends with status 0, so mpirun does not end the job (and drop that rank's
 * line on its way) when this one exits first */
#define STOP_QUIET (-3)

typedef struct {
    cae_dist dist;
    cae_allreduce *ar;
    cae_args a;
    char cmdline[8192];
    cae_ctx ctx;
    cae_dataset *ds;
    cae_loader *loader;
    cae_model model;
    cae_adamw *opt;
    cae_dalle *dalle;
    cae_buf tok_view, grad_norm;
    cae_train_log log;
    cae_recon_state *recon; /* the pixel target's pictures at checkpoints */
    cae_schedule lr_sched, wd_sched;
    size_t steps_per_epoch;
    uint64_t epoch, step; /* next epoch to run, global steps done */
    int have_ctx, have_model, have_log;
} trainer;

/* Decide the target: the DALL-E tokenizer when its weights are given,
 * else the pixel target (said in the log). */
static int choose_target(trainer *t)
{
    cae_args *a = &t->a;
    CAE_TRY(cae_args_choose_target(a, 0));
    if (t->dist.rank != 0)
        return 0;
    if (a->model.pixel_target)
        printf("target: pixels of the masked patches%s (no tokenizer)\n",
               a->norm_pix_loss ? ", each normalized" : "");
    else
        printf("target: DALL-E tokenizer %s\n", a->discrete_vae_weight_path);
    return 0;
}

static int open_data(trainer *t)
{
    cae_loader_cfg lc;
    CAE_TRY(cae_dataset_open(&t->ds, t->a.data_path));
    if (t->dist.rank == 0)
        printf("data: %s\n", cae_dataset_describe(t->ds));
    CAE_TRY(cae_loader_cfg_from_args(&t->a, t->ds, t->dist.rank, t->dist.world, &lc));
    /* cae_loader_new refuses a data set smaller than one global batch */
    CAE_TRY(cae_loader_new(&t->loader, &lc));
    t->steps_per_epoch = cae_loader_steps_per_epoch(t->loader);
    return 0;
}

/* Ranks started with other flags or other data would train apart or wait
 * in a collective for ever: compare digests of the flags and of the file
 * list before the first step, and stop together, the lowest rank that
 * differs naming what does. */
static int check_ranks_agree(trainer *t)
{
    uint64_t v[256];
    const char *name[256];
    int n, rank, item, rc;
    if (t->dist.world == 1)
        return 0;
    n = (int)cae_args_digests(&t->a, v, name, 255);
    v[n] = cae_dataset_digest(t->ds);
    rc = cae_dist_check_same(&t->dist, v, n + 1, &rank, &item);
    if (rc <= 0)
        return rc;
    if (t->dist.rank == rank && item < n)
        cae_errorf("--%s differs from rank 0's", name[item]);
    else if (t->dist.rank == rank)
        cae_errorf("the data set differs from rank 0's: %s", cae_dataset_describe(t->ds));
    return t->dist.rank == rank ? STOP_TOGETHER : STOP_QUIET;
}

static void schedules(trainer *t)
{
    cae_args *a = &t->a;
    t->lr_sched.base = a->lr;
    t->lr_sched.final = a->min_lr;
    t->lr_sched.epochs = (size_t)a->epochs;
    t->lr_sched.niter_per_ep = t->steps_per_epoch;
    t->lr_sched.warmup_epochs = (size_t)a->warmup_epochs;
    t->lr_sched.warmup_steps = a->warmup_steps;
    t->lr_sched.start_warmup = a->warmup_lr;
    t->wd_sched.base = a->weight_decay;
    t->wd_sched.final = a->weight_decay_end > 0 ? a->weight_decay_end : a->weight_decay;
    t->wd_sched.epochs = (size_t)a->epochs;
    t->wd_sched.niter_per_ep = t->steps_per_epoch;
    t->wd_sched.warmup_steps = -1;
}

/* checkpoint-<epoch>: the state at the end of (or within) that epoch */
static int save(trainer *t, uint64_t epoch)
{
    char path[4200];
    cae_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.epoch = t->step / t->steps_per_epoch;
    meta.step = t->step;
    meta.seed = (uint64_t)t->a.seed;
    meta.adam_steps = cae_adamw_steps(t->opt);
    meta.steps_per_epoch = t->steps_per_epoch;
    /* the command line, then every model size as resolved (defaults
     * included), so the file alone says what it holds */
    {
        const cae_config *c = &t->a.model;
        int n = snprintf(meta.args, sizeof meta.args,
                 "%s # resolved: --input_size %d --patch_size %d --embed_dim %d --depth %d "
                 "--num_heads %d --mlp_ratio %g --decoder_embed_dim %d --regressor_depth %d "
                 "--decoder_depth %d --decoder_num_heads %d --decoder_num_classes %d "
                 "--layer_scale_init_value %g --decoder_layer_scale_init_value %g "
                 "--num_mask_patches %d --discrete_vae_type %s",
                 t->cmdline, c->input_size, c->patch_size, c->embed_dim, c->depth, c->num_heads,
                 c->mlp_ratio, c->decoder_embed_dim, c->regressor_depth, c->decoder_depth,
                 c->decoder_num_heads, c->decoder_num_classes, c->layer_scale_init_value,
                 c->decoder_layer_scale_init_value, c->num_mask_patches,
                 c->pixel_target ? "pixel" : "dall-e");
        if (n < 0 || (size_t)n >= sizeof meta.args)
            cae_errorf("warning: the argument list is too long for the checkpoint's metadata; "
                       "it is cut at %zu bytes", sizeof meta.args - 1);
    }
    CAE_TRY(cae_checkpoint_epoch_path(path, sizeof path, t->a.output_dir, epoch));
    CAE_TRY(cae_checkpoint_save(path, &t->ctx, &t->model.table, &t->model.params,
                                cae_adamw_exp_avg(t->opt), cae_adamw_exp_avg_sq(t->opt), &meta));
    printf("saved %s (step %llu)\n", path, (unsigned long long)t->step); /* rank 0 only */
    return cae_recon_checkpoint(&t->recon, &t->ctx, &t->a, &t->model, t->a.output_dir, epoch);
}

/* A file that is not a cae-cl training checkpoint (no format metadata of
 * ours): weights to start from (1), or a checkpoint (0); -1 when it cannot
 * be read (reported once, here: reading it again would repeat the line). */
static int is_weights_file(const char *path)
{
    cae_st_file f;
    const char *format;
    int weights;
    if (cae_st_read_header(&f, path) != 0)
        return -1;
    format = cae_st_meta(&f, "format");
    weights = !format || strncmp(format, "cae-cl-checkpoint-", 18) != 0;
    cae_st_free(&f);
    return weights;
}

/* Where a checkpoint's run goes on. At the batch size it was saved with
 * (or one written before the steps per epoch were recorded): the very next
 * step. At another one, by epoch, as the official code does: the epoch
 * after the last one completed, at this run's steps per epoch, so the
 * schedules are where a fresh run at this batch size would be. A mid-epoch
 * checkpoint (--stop_after_steps, a signal) has no place in the new epoch's
 * order: its epoch restarts, from the weights as they were, as the official
 * code (which saves at epoch ends only) would restart it. */
static void resume_position(trainer *t, const cae_ckpt_meta *meta)
{
    uint64_t saved = meta->steps_per_epoch;
    if (saved == 0 || saved == t->steps_per_epoch) {
        t->step = meta->step;
        t->epoch = meta->step / t->steps_per_epoch;
        return;
    }
    t->epoch = meta->step / saved;
    t->step = t->epoch * t->steps_per_epoch;
    if (t->dist.rank == 0)
        printf("resuming by epoch: the checkpoint has %llu steps per epoch, this run %zu%s\n",
               (unsigned long long)saved, t->steps_per_epoch,
               meta->step % saved ? "; its epoch was not finished and restarts" : "");
}

static int resume(trainer *t)
{
    char found[4200];
    const char *path;
    cae_ckpt_meta meta;
    int weights;
    CAE_TRY(cae_checkpoint_resume_from(t->a.resume, t->a.auto_resume, t->a.output_dir,
                                       &t->model.table, found, sizeof found, &path));
    if (!path)
        return 0;
    if ((weights = is_weights_file(path)) < 0)
        return -1;
    if (weights) {
        /* an official checkpoint converted by cae-cl-convert-checkpoint, or
         * weights alone: the model continues, the optimizer starts afresh */
        CAE_TRY(cae_checkpoint_load(path, &t->ctx, &t->model.table, &t->model.params, NULL, NULL,
                                    &meta));
        if (t->dist.rank == 0)
            printf("initialized from the weights in %s (no optimizer state: AdamW starts afresh "
                   "at step 0)\n", path);
        return 0;
    }
    CAE_TRY(cae_checkpoint_load(path, &t->ctx, &t->model.table, &t->model.params,
                                cae_adamw_exp_avg(t->opt), cae_adamw_exp_avg_sq(t->opt), &meta));
    cae_adamw_set_steps(t->opt, meta.adam_steps);
    resume_position(t, &meta);
    if (t->dist.rank == 0)
        printf("resumed from %s: step %llu (epoch %llu)\n", path, (unsigned long long)t->step,
               (unsigned long long)t->epoch + 1);
    return 0;
}

static int setup(trainer *t)
{
    cae_args *a = &t->a;
    cae_ctx_options opt = {.gemm = a->gemm};
    char desc[512];
    int rc;

    /* ranks sharing a CPU split its cores */
    opt.device_slot = t->dist.device_slot;
    if (t->dist.world > 1)
        opt.host_threads = t->dist.host_threads;

    CAE_TRY(choose_target(t));
    CAE_TRY(cae_config_finish(&a->model));
    if (t->dist.rank == 0)
        CAE_TRY(cae_output_dir_make(a->output_dir));
    if (t->dist.world > 1 && MPI_Barrier(t->dist.comm) != MPI_SUCCESS) {
        cae_errorf("MPI_Barrier failed");
        return -1;
    }
    CAE_TRY(open_data(t));
    if ((rc = check_ranks_agree(t)) != 0)
        return rc;
    CAE_TRY(cae_ctx_init(&t->ctx, &opt));
    t->have_ctx = 1;
    cae_config_describe(&a->model, desc, sizeof desc);
    if (t->dist.world > 1)
        CAE_TRY(cae_dist_device_table(&t->dist, &t->ctx));
    if (t->dist.rank == 0)
        printf("device: %s (%s), GEMM: %s\nmodel: %s\n", t->ctx.device_name, t->ctx.platform_name,
               cae_gemm_backend(&t->ctx) == CAE_GEMM_HOST ? "host BLAS" : "CLBlast", desc);
    CAE_TRY(cae_model_init(&t->model, &t->ctx, &a->model, (size_t)a->batch_size));
    t->have_model = 1;
    CAE_TRY(cae_model_init_weights(&t->model, (uint64_t)a->seed));
    CAE_TRY(cae_adamw_new(&t->opt, &t->ctx, &t->model.table, &t->model.params, &t->model.grads));
    CAE_TRY(cae_alloc(&t->ctx, 4, &t->grad_norm.mem));
    if (t->dist.world > 1) {
        size_t bucket = (size_t)(a->bucket_cap_mb * 1048576.0);
        CAE_TRY(cae_allreduce_new(&t->ar, &t->ctx, &t->model.table, &t->model.grads, t->dist.comm,
                                  bucket >= 4 ? bucket : 4));
        cae_model_on_grads(&t->model, cae_allreduce_ready, t->ar);
    }
    if (!a->model.pixel_target) {
        size_t S2 = (size_t)a->second_input_size;
        CAE_TRY(cae_dalle_load(&t->dalle, &t->ctx, a->discrete_vae_weight_path, (size_t)a->batch_size,
                               a->second_input_size));
        if (cae_dalle_vocab(t->dalle) != a->model.decoder_num_classes) {
            cae_errorf("%s: vocabulary %d, but --decoder_num_classes is %d", a->discrete_vae_weight_path,
                       cae_dalle_vocab(t->dalle), a->model.decoder_num_classes);
            return -1;
        }
        CAE_TRY(cae_alloc(&t->ctx, (size_t)a->batch_size * 3 * S2 * S2 * 4, &t->tok_view.mem));
    }
    if (t->dist.rank == 0)
        printf("parameters: %zu; batch %d x %d ranks; %zu steps per epoch; %d epochs; output %s\n",
               t->model.table.total, a->batch_size, t->dist.world, t->steps_per_epoch, a->epochs,
               a->output_dir);
    schedules(t);
    CAE_TRY(resume(t));
    /* every rank starts from the same parameters */
    CAE_TRY(cae_dist_check_sync(&t->dist, &t->ctx, &t->model.table, &t->model.params, t->step));
    if (t->dist.rank == 0) { /* one writer */
        CAE_TRY(cae_train_log_open(&t->log, a->output_dir, a->model.pixel_target));
        t->have_log = 1;
    }
    return 0;
}

/* One step on a loaded batch. Loss terms, skipped images and stop
 * requests are summed over ranks; *stop_sig is the signal any rank got. */
static int train_step(trainer *t, cae_batch *b, cae_step_metrics *sm, int *stop_sig)
{
    cae_args *a = &t->a;
    cae_losses l;
    cae_adamw_hparams h;
    float norm;
    double lr = cae_schedule_at(&t->lr_sched, t->step);
    double wd = cae_schedule_at(&t->wd_sched, t->step);

    CAE_TRY(cae_model_set_inputs(&t->model, b->samples, b->mask));
    if (t->dalle) {
        size_t S2 = (size_t)a->second_input_size;
        CAE_TRY(cae_write(&t->ctx, t->tok_view, b->tok_view, b->batch * 3 * S2 * S2 * 4));
        CAE_TRY(cae_dalle_labels(t->dalle, cae_model_labels(&t->model), t->tok_view,
                                 cae_model_masked_idx(&t->model), (size_t)a->model.num_mask_patches));
    }
    /* each rank draws its own samples' drop-path masks */
    CAE_TRY(cae_model_set_drop_path(&t->model, (uint64_t)a->seed + 0x9e3779b97f4a7c15ULL * (uint64_t)t->dist.rank,
                                    t->step));
    CAE_TRY(cae_model_step_begin(&t->model));
    sm->comm_ms = -1;
    if (t->ar) { /* average the gradients while the backward pass finishes */
        const cae_allreduce_stats *st;
        CAE_TRY(cae_allreduce_finish(t->ar));
        st = cae_allreduce_last(t->ar);
        sm->comm_ms = st->comm_ms;
        sm->comm_hidden_ms = st->hidden_ms;
    }
    CAE_TRY(cae_model_step_end(&t->model, &l));
    {
        double v[5] = {l.loss_main, l.loss_align, l.mlm_acc, (double)b->skipped, (double)stop_signal};
        double w = (double)t->dist.world;
        CAE_TRY(cae_dist_sum(&t->dist, v, 5));
        l.loss_main = v[0] / w;
        l.loss_align = v[1] / w;
        l.mlm_acc = v[2] / w;
        l.loss = l.loss_main + l.loss_align;
        sm->skipped = (size_t)v[3];
        *stop_sig = v[4] > 0 ? (int)v[4] : 0;
    }
    if (!isfinite(l.loss)) {
        if (t->dist.rank == 0)
            cae_errorf("non-finite loss at step %llu (epoch %llu): loss %g, loss_main %g, loss_align %g; "
                       "stopping before the update, the last checkpoint is intact",
                       (unsigned long long)t->step, (unsigned long long)t->epoch + 1, l.loss,
                       l.loss_main, l.loss_align);
        return STOP_TOGETHER;
    }
    h.lr = lr;
    h.weight_decay = wd;
    h.beta1 = 0.9;
    h.beta2 = 0.999;
    h.eps = a->opt_eps;
    h.clip_grad = a->clip_grad;
    CAE_TRY(cae_adamw_step(t->opt, &h, t->grad_norm));
    CAE_TRY(cae_read(&t->ctx, &norm, t->grad_norm, sizeof norm));
    sm->loss = l.loss;
    sm->loss_main = l.loss_main;
    sm->loss_align = l.loss_align;
    sm->mlm_acc = l.mlm_acc;
    sm->lr = sm->min_lr = lr;
    sm->weight_decay = wd;
    sm->grad_norm = norm;
    return 0;
}

/* Unusable images are skipped (the next usable one takes their place),
 * but a folder gone mid-run must not be trained around without end: past
 * --max_bad_image_share of the epoch's images every rank stops (bad is the
 * count over all ranks, the same on each). */
static int bad_share_ok(const trainer *t, size_t bad)
{
    double images = (double)t->steps_per_epoch * t->a.batch_size * t->dist.world;
    if ((double)bad <= t->a.max_bad_image_share * images)
        return 1;
    if (t->dist.rank == 0)
        cae_errorf("epoch %llu: %zu unusable images skipped so far, %.1f%% of its %.0f, more than "
                   "--max_bad_image_share %g allows; stopping, the last checkpoint is intact",
                   (unsigned long long)t->epoch + 1, bad, 100.0 * (double)bad / images, images,
                   t->a.max_bad_image_share);
    return 0;
}

static int run_epoch(trainer *t, int *stopped)
{
    int rc;
    uint64_t first = t->step % t->steps_per_epoch;
    double t_prev = cae_now_ms(), t_start = t_prev;
    uint64_t done_here = 0, total = (uint64_t)t->a.epochs * t->steps_per_epoch;
    size_t bad = 0; /* unusable images this epoch, all ranks */
    CAE_TRY(cae_loader_start(t->loader, t->epoch, first));
    for (;;) {
        cae_batch *b;
        cae_step_metrics sm;
        double now, eta;
        int r = cae_loader_next(t->loader, &b);
        if (r < 0)
            return -1;
        if (r == 1)
            break;
        int stop_sig = 0;
        memset(&sm, 0, sizeof sm);
        sm.step = t->step;
        sm.epoch = t->epoch;
        sm.data_wait_ms = b->wait_ms;
        sm.skipped = b->skipped;
        rc = train_step(t, b, &sm, &stop_sig);
        if (rc != 0) {
            cae_loader_release(t->loader, b);
            return rc;
        }
        cae_loader_release(t->loader, b);
        bad += sm.skipped;
        if (!bad_share_ok(t, bad))
            return STOP_TOGETHER;
        t->step++;
        done_here++;
        now = cae_now_ms();
        sm.step_ms = now - t_prev;
        sm.images_per_s = (double)t->a.batch_size * t->dist.world * 1000.0 /
                          (sm.step_ms > 0 ? sm.step_ms : 1e-9);
        t_prev = now;
        eta = (now - t_start) / 1000.0 / (double)done_here * (double)(total - t->step);
        if (t->have_log)
            CAE_TRY(cae_train_log_step(&t->log, &sm, t->steps_per_epoch, (uint64_t)t->a.epochs, eta));
        if (t->a.check_sync_freq > 0 && t->step % (uint64_t)t->a.check_sync_freq == 0)
            CAE_TRY(cae_dist_check_sync(&t->dist, &t->ctx, &t->model.table, &t->model.params, t->step));
        if (stop_sig)
            stop_signal = stop_sig; /* every rank stops after the same step */
        if (stop_signal || (t->a.stop_after_steps > 0 && t->step >= (uint64_t)t->a.stop_after_steps)) {
            *stopped = 1;
            return 0;
        }
    }
    return 0;
}

static int train(trainer *t)
{
    for (; t->epoch < (uint64_t)t->a.epochs; t->epoch++) {
        int stopped = 0, rc = run_epoch(t, &stopped);
        if (rc != 0)
            return rc;
        if (stopped) {
            if (t->dist.rank == 0) {
                CAE_TRY(save(t, t->epoch));
                if (stop_signal)
                    fprintf(stderr, "cae-cl: stopped by signal %d after step %llu; checkpoint written\n",
                            (int)stop_signal, (unsigned long long)t->step);
            }
            return stop_signal ? 128 + (int)stop_signal : 0;
        }
        if (t->have_log)
            CAE_TRY(cae_train_log_epoch(&t->log, t->epoch, t->model.table.total));
        if (t->dist.rank == 0 &&
            ((t->epoch + 1) % (uint64_t)(t->a.save_ckpt_freq > 0 ? t->a.save_ckpt_freq : 1) == 0 ||
             t->epoch + 1 == (uint64_t)t->a.epochs))
            CAE_TRY(save(t, t->epoch));
    }
    if (t->dist.rank == 0)
        printf("done: %llu steps\n", (unsigned long long)t->step);
    return 0;
}

static void teardown(trainer *t)
{
    if (t->have_log)
        cae_train_log_close(&t->log);
    if (t->loader)
        cae_loader_free(t->loader);
    if (t->dalle)
        cae_dalle_free(t->dalle);
    cae_recon_state_free(t->recon);
    if (t->opt)
        cae_adamw_free(t->opt);
    cae_release(&t->tok_view.mem);
    cae_release(&t->grad_norm.mem);
    if (t->ar)
        cae_allreduce_free(t->ar);
    if (t->have_model)
        cae_model_free(&t->model);
    if (t->have_ctx)
        cae_ctx_free(&t->ctx);
    if (t->ds)
        cae_dataset_free(t->ds);
}

int main(int argc, char **argv)
{
    static trainer t;
    struct sigaction sa;
    int rc;

    if (cae_dist_init(&t.dist, &argc, &argv) != 0)
        return 1;
    if (t.dist.world > 1)
        cae_error_set_rank(t.dist.rank);
    if (cae_args_parse(&t.a, argc, argv) != 0) {
        cae_dist_finalize(&t.dist);
        return 2;
    }
    if (t.a.help || t.a.list_devices) {
        if (t.a.help && t.dist.rank == 0)
            cae_args_usage(stdout, "cae-cl-train",
                           "CAE pretraining. Without --data_path: a small model on Fashion-MNIST.\n"
                           "  --stop_after_steps N   checkpoint and stop after N steps");
        rc = t.a.list_devices && t.dist.rank == 0 ? (cae_list_devices(stdout) == 0 ? 0 : 1) : 0;
        cae_dist_finalize(&t.dist);
        return rc;
    }
    (void)cae_checkpoint_args(t.cmdline, sizeof t.cmdline, argc, argv); /* cut: warned at save */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((rc = setup(&t)) == 0)
        rc = train(&t);
    if (rc == -1 && t.dist.world > 1) /* this rank failed: stop the others now */
        cae_dist_abort(&t.dist, 1, "training failed (the cause is above)");
    if (rc == STOP_QUIET)
        rc = 0;
    else if (rc < 0)
        rc = 1;
    teardown(&t);
    cae_dist_finalize(&t.dist);
    return rc;
}

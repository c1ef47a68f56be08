/* args.h: the command line shared by every cae-cl program.
 *
 * Flags keep the official run_pretraining.py names, so an existing command
 * line works unchanged; `--flag value` and `--flag=value` are both accepted.
 * Flags a program does not use are parsed, checked and ignored.
 */
#ifndef CAE_ARGS_H
#define CAE_ARGS_H

#include "model/cae_config.h"
#include "runtime/runtime.h"

typedef struct {
    cae_config model;
    const char *model_name;
    /* data and schedule (the training program's) */
    const char *data_path, *output_dir, *log_dir, *resume, *exp_name;
    const char *discrete_vae_weight_path, *discrete_vae_type;
    const char *mask_generator, *train_interpolation, *second_interpolation;
    const char *opt;
    int batch_size, epochs, warmup_epochs, warmup_steps, save_ckpt_freq;
    int num_workers, start_epoch, second_input_size;
    int max_mask_patches_per_block, min_mask_patches_per_block;
    double lr, warmup_lr, min_lr, weight_decay, weight_decay_end, clip_grad;
    double momentum, opt_eps, color_jitter, ratio_mask_patches;
    double crop_min_size, crop_max_size;
    long seed;
    int imagenet_default_mean_and_std, auto_resume, norm_pix_loss;
    int builtin_data; /* no --data_path: Fashion-MNIST with the small default model */
    int model_given;  /* --model appeared */
    long stop_after_steps; /* cae-cl-train: checkpoint and stop after this many global steps */
    double bucket_cap_mb;  /* all-reduce bucket size */
    int check_sync_freq;   /* steps between parameter checksum comparisons across ranks */
    double max_bad_image_share; /* cae-cl-train: most unusable images per epoch, as a share */
    /* cae-cl's own */
    cae_gemm_choice gemm;
    const char *weights, *batch, *out, *check;
    int steps; /* cae-cl-step: repetitions */
    int list_devices, help;
    /* the evaluation programs (cae-cl-linear) */
    const char *finetune;
    double blr;
    int use_cls, use_mean_pooling, cache_features, eval, nb_classes, dist_eval;
    int enable_linear_eval, save_freq; /* save_freq: cae-cl-linear's checkpoint epochs */
    const char *linear_type;           /* NULL: not given */
    /* cae-cl-finetune (run_class_finetuning.py) */
    double layer_decay, smoothing, mixup, cutmix, mixup_prob, mixup_switch_prob, reprob;
    double init_scale;
    const char *aa;
    /* cae-cl-bench */
    int synthetic, bench_steps, warmup_steps_bench;
    const char *json;
    /* cae-cl-tune */
    double budget_s;
    int max_candidates;
} cae_args;

/* Defaults, then argv; the --model preset applies before the size flags,
 * wherever it appears. Returns 0, or -1 after one line naming the flag. */
int cae_args_parse(cae_args *a, int argc, char **argv);
/* Whether argv names this flag (as --name or --name=...): programs set
 * their own defaults for flags the user did not give. */
int cae_args_given(int argc, char **argv, const char *name);
/* One digest of each resolved flag value that every rank of a run must
 * share (each flag that holds a value, --num_workers aside), and the flag's
 * name without the dashes, for the ranks to compare before the first step.
 * Returns how many (at most max). */
size_t cae_args_digests(const cae_args *a, uint64_t *digest, const char **name, size_t max);
/* Decide the target from --discrete_vae_type and --discrete_vae_weight_path:
 * the DALL-E tokenizer's labels when its weights are given, else the
 * masked patches' pixels (model.pixel_target, norm_pix_loss, and no
 * tokenizer view). random_labels: token labels come from elsewhere
 * (cae-cl-bench --synthetic), so dall-e is the default and needs no weights.
 * -1 with one line naming the flag on a bad combination. */
int cae_args_choose_target(cae_args *a, int random_labels);

/* The flags whose one accepted value depends on the program: probe is
 * its --linear_type ("standard": cae-cl-linear, "attentive":
 * cae-cl-attentive), NULL for cae-cl-finetune (no frozen encoder, no
 * --linear_type). --save_freq other than 1 is cae-cl-linear's only.
 * Returns 0, or -1 after one line naming the flag. */
int cae_args_check_probe(const cae_args *a, const char *probe);

/* The flag reference for --help. */
void cae_args_usage(FILE *out, const char *program, const char *extra);

#endif

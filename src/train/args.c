/* args.c: table-driven parsing of the official flag names. */
#include "train/args.h"

#include "runtime/digest.h"
#include "runtime/errors.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* F_ONLY: an official flag cae-cl accepts only at the value it implements
 * (the only[] table); F_REFUSE_*: an official flag whose effect cae-cl
 * lacks, refused with its help text as the reason. */
typedef enum { F_INT, F_LONG, F_DOUBLE, F_STRING, F_TRUE, F_FALSE, F_GEMM, F_IGNORE_VALUE,
               F_IGNORE_LIST, F_IGNORE_SWITCH, F_ONLY, F_REFUSE_SWITCH, F_REFUSE_VALUE } flag_kind;

typedef struct {
    const char *name;
    flag_kind kind;
    size_t offset; /* into cae_args */
    const char *help;
} flag_spec;

#define A(field) offsetof(cae_args, field)
#define M(field) (offsetof(cae_args, model) + offsetof(cae_config, field))

static const flag_spec flags[] = {
    /* model */
    {"model", F_STRING, A(model_name), "preset: cae_{tiny,small,base,large}_patch16_224_8k_vocab"},
    {"input_size", F_INT, M(input_size), "image size S"},
    {"patch_size", F_INT, M(patch_size), "patch size P"},
    {"embed_dim", F_INT, M(embed_dim), "encoder width D"},
    {"depth", F_INT, M(depth), "encoder blocks"},
    {"num_heads", F_INT, M(num_heads), "encoder heads"},
    {"mlp_ratio", F_DOUBLE, M(mlp_ratio), "MLP hidden width / width"},
    {"decoder_embed_dim", F_INT, M(decoder_embed_dim), "regressor and decoder width"},
    {"regressor_depth", F_INT, M(regressor_depth), "regressor blocks"},
    {"decoder_depth", F_INT, M(decoder_depth), "decoder blocks"},
    {"decoder_num_heads", F_INT, M(decoder_num_heads), "regressor and decoder heads"},
    {"decoder_num_classes", F_INT, M(decoder_num_classes), "tokenizer vocabulary K"},
    {"layer_scale_init_value", F_DOUBLE, M(layer_scale_init_value), "encoder layer scale (0: none)"},
    {"decoder_layer_scale_init_value", F_DOUBLE, M(decoder_layer_scale_init_value),
     "regressor/decoder layer scale (0: none)"},
    {"align_loss_weight", F_DOUBLE, M(align_loss_weight), "weight of the alignment MSE"},
    {"num_mask_patches", F_INT, M(num_mask_patches), "masked patches per image"},
    {"drop_path", F_DOUBLE, M(drop_path), "stochastic depth rate"},
    /* data, masking, augmentation */
    {"data_path", F_STRING, A(data_path), "ImageFolder root"},
    {"batch_size", F_INT, A(batch_size), "images per rank and step"},
    {"second_input_size", F_INT, A(second_input_size), "tokenizer view size"},
    {"mask_generator", F_STRING, A(mask_generator), "block or random"},
    {"max_mask_patches_per_block", F_INT, A(max_mask_patches_per_block), "block masking"},
    {"min_mask_patches_per_block", F_INT, A(min_mask_patches_per_block), "block masking"},
    {"ratio_mask_patches", F_DOUBLE, A(ratio_mask_patches), "random masking"},
    {"crop_min_size", F_DOUBLE, A(crop_min_size), "RandomResizedCrop scale minimum"},
    {"crop_max_size", F_DOUBLE, A(crop_max_size), "RandomResizedCrop scale maximum"},
    {"train_interpolation", F_STRING, A(train_interpolation), "model view filter"},
    {"second_interpolation", F_STRING, A(second_interpolation), "tokenizer view filter"},
    {"color_jitter", F_DOUBLE, A(color_jitter), "color jitter strength"},
    {"imagenet_default_mean_and_std", F_TRUE, A(imagenet_default_mean_and_std), "ImageNet normalization"},
    {"discrete_vae_weight_path", F_STRING, A(discrete_vae_weight_path), "tokenizer weights"},
    {"discrete_vae_type", F_STRING, A(discrete_vae_type), "dall-e or pixel (default: pixel without tokenizer weights)"},
    {"norm_pix_loss", F_TRUE, A(norm_pix_loss), "pixel target: normalize each patch"},
    {"num_workers", F_INT, A(num_workers), "loader threads"},
    /* optimization */
    {"epochs", F_INT, A(epochs), "training epochs"},
    {"lr", F_DOUBLE, A(lr), "peak learning rate (not scaled by batch size)"},
    {"warmup_lr", F_DOUBLE, A(warmup_lr), "warmup start lr"},
    {"min_lr", F_DOUBLE, A(min_lr), "final lr"},
    {"warmup_epochs", F_INT, A(warmup_epochs), "linear warmup epochs"},
    {"warmup_steps", F_INT, A(warmup_steps), "linear warmup steps (overrides epochs)"},
    {"weight_decay", F_DOUBLE, A(weight_decay), "AdamW weight decay"},
    {"weight_decay_end", F_DOUBLE, A(weight_decay_end), "final weight decay"},
    {"clip_grad", F_DOUBLE, A(clip_grad), "global gradient norm clip"},
    {"opt", F_STRING, A(opt), "optimizer"},
    {"opt_eps", F_DOUBLE, A(opt_eps), "AdamW epsilon"},
    {"opt_betas", F_IGNORE_LIST, 0, "AdamW betas"},
    {"momentum", F_DOUBLE, A(momentum), "SGD momentum"},
    /* run */
    {"output_dir", F_STRING, A(output_dir), "checkpoints and logs"},
    {"log_dir", F_STRING, A(log_dir), "log folder"},
    {"exp_name", F_STRING, A(exp_name), "experiment name"},
    {"seed", F_LONG, A(seed), "random seed"},
    {"resume", F_STRING, A(resume), "checkpoint to resume"},
    {"auto_resume", F_TRUE, A(auto_resume), "resume from output_dir"},
    {"no_auto_resume", F_FALSE, A(auto_resume), "do not resume"},
    {"save_ckpt_freq", F_INT, A(save_ckpt_freq), "epochs between checkpoints"},
    {"start_epoch", F_INT, A(start_epoch), "first epoch"},
    /* accepted for compatibility with official command lines */
    {"sincos_pos_emb", F_IGNORE_SWITCH, 0, "(always on)"},
    {"device", F_IGNORE_VALUE, 0, "(no effect: use CAE_CL_PLATFORM / CAE_CL_DEVICE)"},
    {"pin_mem", F_IGNORE_SWITCH, 0, "(no effect under mpirun)"},
    {"no_pin_mem", F_IGNORE_SWITCH, 0, "(no effect under mpirun)"},
    {"world_size", F_IGNORE_VALUE, 0, "(no effect: mpirun sets the ranks)"},
    {"local_rank", F_IGNORE_VALUE, 0, "(no effect: mpirun sets the ranks)"},
    {"dist_on_itp", F_IGNORE_SWITCH, 0, "(no effect under mpirun)"},
    {"dist_url", F_IGNORE_VALUE, 0, "(no effect under mpirun)"},
    {"enable_multi_print", F_IGNORE_SWITCH, 0, "(no effect)"},
    {"model_type", F_IGNORE_VALUE, 0, "(CAE only)"},
    {"target_mode", F_IGNORE_VALUE, 0, "(no effect)"},
    {"fix_init_weight", F_IGNORE_SWITCH, 0, "(no effect)"},
    {"abs_pos_emb", F_IGNORE_SWITCH, 0, "(no effect)"},
    {"rel_pos_bias", F_IGNORE_SWITCH, 0, "(no effect)"},
    {"disable_rel_pos_bias", F_IGNORE_SWITCH, 0, "(no effect)"},
    /* cae-cl */
    {"gemm", F_GEMM, A(gemm), "auto, clblast or host"},
    {"weights", F_STRING, A(weights), "cae-cl-step: weights .safetensors"},
    {"batch", F_STRING, A(batch), "cae-cl-step: batch .safetensors"},
    {"out", F_STRING, A(out), "cae-cl-step: write outputs here"},
    {"check", F_STRING, A(check), "cae-cl-step: compare with expected outputs"},
    {"steps", F_INT, A(steps), "cae-cl-step: repeat the step N times (timing)"},
    {"bucket_cap_mb", F_DOUBLE, A(bucket_cap_mb), "mpirun: gradient all-reduce bucket size in MiB (25)"},
    {"check_sync_freq", F_INT, A(check_sync_freq), "mpirun: steps between rank parameter checks (1000; 0: start only)"},
    {"stop_after_steps", F_LONG, A(stop_after_steps), "cae-cl-train: checkpoint and stop after N steps"},
    {"max_bad_image_share", F_DOUBLE, A(max_bad_image_share),
     "cae-cl-train: stop when more than this share of an epoch's images is unusable (0.05)"},
    {"synthetic", F_TRUE, A(synthetic), "cae-cl-bench: random images, masks and labels (no data, no tokenizer)"},
    {"bench_steps", F_INT, A(bench_steps), "cae-cl-bench: timed steps (10)"},
    {"warmup_steps_bench", F_INT, A(warmup_steps_bench), "cae-cl-bench: untimed warm-up steps (2)"},
    {"json", F_STRING, A(json), "cae-cl-bench: also write the results to this JSON file"},
    {"budget_s", F_DOUBLE, A(budget_s), "cae-cl-tune: seconds for the CLBlast search (240)"},
    {"max_candidates", F_INT, A(max_candidates), "cae-cl-tune: most CLBlast parameter sets tried (24)"},
    {"finetune", F_STRING, A(finetune), "cae-cl-linear: encoder weights (checkpoint or weights file) or 'random'"},
    {"blr", F_DOUBLE, A(blr), "cae-cl-linear: base lr; lr = blr * global batch / 256"},
    {"use_cls", F_TRUE, A(use_cls), "cae-cl-linear: features are the cls token of the final norm (default)"},
    {"use_mean_pooling", F_TRUE, A(use_mean_pooling), "cae-cl-linear: features are the mean of the patch tokens"},
    {"cache_features", F_TRUE, A(cache_features), "cae-cl-linear: training features once, without augmentation"},
    {"eval", F_TRUE, A(eval), "cae-cl-linear: evaluate the head of --resume without training"},
    {"nb_classes", F_INT, A(nb_classes), "cae-cl-linear: classes (default: the data set's)"},
    {"dist_eval", F_TRUE, A(dist_eval), "cae-cl-linear/attentive under mpirun: shard the evaluation across ranks"},
    {"layer_decay", F_DOUBLE, A(layer_decay), "cae-cl-finetune: layer-wise lr decay (0.9)"},
    {"smoothing", F_DOUBLE, A(smoothing), "cae-cl-finetune: label smoothing (0.1)"},
    {"mixup", F_DOUBLE, A(mixup), "cae-cl-finetune: mixup alpha (0: off)"},
    {"cutmix", F_DOUBLE, A(cutmix), "cae-cl-finetune: cutmix alpha (0: off)"},
    {"mixup_prob", F_DOUBLE, A(mixup_prob), "cae-cl-finetune: probability of mixup or cutmix per batch (1)"},
    {"mixup_switch_prob", F_DOUBLE, A(mixup_switch_prob), "cae-cl-finetune: probability of cutmix when both are on (0.5)"},
    {"mixup_mode", F_IGNORE_VALUE, 0, "(batch only)"},
    {"cutmix_minmax", F_IGNORE_LIST, 0, "(not supported: alpha only)"},
    {"aa", F_STRING, A(aa), "cae-cl-finetune: RandAugment policy (rand-m9-mstd0.5-inc1)"},
    {"reprob", F_DOUBLE, A(reprob), "cae-cl-finetune: random erasing probability (0.25)"},
    {"init_scale", F_DOUBLE, A(init_scale), "cae-cl-finetune: head initialization scale (0.001)"},
    {"sin_pos_emb", F_IGNORE_SWITCH, 0, "(always on)"},
    {"use_abs_pos_emb", F_IGNORE_SWITCH, 0, "(no effect: fixed sin-cos positions)"},
    /* the probes' and fine-tuning's other official flags */
    {"enable_linear_eval", F_TRUE, A(enable_linear_eval),
     "cae-cl-linear/attentive: frozen encoder (what they do; refused by cae-cl-finetune)"},
    {"linear_type", F_STRING, A(linear_type),
     "standard with cae-cl-linear, attentive with cae-cl-attentive (no other value)"},
    {"save_freq", F_INT, A(save_freq),
     "cae-cl-linear: write the head at epochs divisible by N and the last (1)"},
    {"data_set", F_ONLY, 0,
     "IMNET only (--data_path/train and --data_path/val; CIFAR, IMNET100 and image_folder are not supported yet)"},
    {"update_freq", F_ONLY, 0, "1 only (gradient accumulation is not supported yet)"},
    {"accum_iter", F_ONLY, 0, "1 only (gradient accumulation is not supported yet)"},
    {"drop", F_ONLY, 0, "0 only (dropout is not supported yet)"},
    {"attn_drop_rate", F_ONLY, 0, "0 only (attention dropout is not supported yet)"},
    {"crop_pct", F_ONLY, 0, "0.875 only (the evaluation crop; another is not supported yet)"},
    {"remode", F_ONLY, 0, "pixel only (random erasing fills with per-pixel noise)"},
    {"recount", F_ONLY, 0, "1 only (one erased box per image)"},
    {"model_key", F_ONLY, 0, "model|module|state_dict only (cae-cl reads its own checkpoints)"},
    {"model_prefix", F_ONLY, 0, "'' only (cae-cl reads its own checkpoints)"},
    {"save_ckpt", F_IGNORE_SWITCH, 0, "(the default: checkpoints are written)"},
    {"model_ema_decay", F_IGNORE_VALUE, 0, "(no effect: --model_ema is not supported)"},
    {"model_ema_force_cpu", F_IGNORE_SWITCH, 0, "(no effect: --model_ema is not supported)"},
    {"enable_deepspeed", F_REFUSE_SWITCH, 0, "refused: cae-cl has no DeepSpeed (it runs under mpirun)"},
    {"model_ema", F_REFUSE_SWITCH, 0, "refused: a weight EMA is not supported yet"},
    {"resplit", F_REFUSE_SWITCH, 0, "refused: random erasing across augmentation splits is not supported yet"},
    {"disable_sin_pos_emb", F_REFUSE_SWITCH, 0, "refused: cae-cl always uses fixed sin-cos positions"},
    {"disable_eval_during_finetuning", F_REFUSE_SWITCH, 0,
     "refused: not supported yet (cae-cl evaluates every epoch)"},
    {"disable_weight_decay_on_rel_pos_bias", F_REFUSE_SWITCH, 0,
     "refused: cae-cl has no relative position bias"},
    {"no_save_ckpt", F_REFUSE_SWITCH, 0, "refused: not supported yet (checkpoints are always written)"},
    {"eval_data_path", F_REFUSE_VALUE, 0,
     "refused: not supported yet (the val split is --data_path/val, as --data_set IMNET)"},
    {"list-devices", F_TRUE, A(list_devices), "print the OpenCL devices and exit"},
    {"help", F_TRUE, A(help), "this text"},
};

static void defaults(cae_args *a)
{
    memset(a, 0, sizeof *a);
    cae_config_defaults(&a->model);
    a->model_name = "cae_base_patch16_224_8k_vocab";
    a->batch_size = 64;
    a->second_input_size = 112;
    a->mask_generator = "block";
    a->min_mask_patches_per_block = 16;
    a->ratio_mask_patches = 0.4;
    a->crop_min_size = 0.08;
    a->crop_max_size = 1.0;
    a->train_interpolation = "bicubic";
    a->second_interpolation = "lanczos";
    a->color_jitter = 0.4;
    a->discrete_vae_type = NULL; /* decided by cae-cl-train */
    a->num_workers = 10;
    a->epochs = 300;
    a->lr = 5e-4;
    a->min_lr = 1e-5;
    a->warmup_epochs = 5;
    a->warmup_steps = -1;
    a->weight_decay = 0.05;
    a->opt = "adamw";
    a->opt_eps = 1e-8;
    a->momentum = 0.9;
    a->output_dir = "output";
    a->seed = 0;
    a->auto_resume = 1;
    a->save_ckpt_freq = 20;
    a->gemm = CAE_GEMM_AUTO;
    a->bucket_cap_mb = 25.0;
    a->check_sync_freq = 1000;
    a->max_bad_image_share = 0.05;
    a->bench_steps = 10;
    a->warmup_steps_bench = 2;
    a->budget_s = 240.0;
    a->max_candidates = 24;
    a->layer_decay = 0.9;
    a->smoothing = 0.1;
    a->mixup_prob = 1.0;
    a->mixup_switch_prob = 0.5;
    a->aa = "rand-m9-mstd0.5-inc1";
    a->reprob = 0.25;
    a->init_scale = 0.001;
    a->save_freq = 1;
}

/* Without --data_path the run trains on Fashion-MNIST (28x28 gray): a small
 * model on 28x28 inputs, two epochs in minutes on two CPU cores. Its
 * settings were chosen by linear probing (mean pooling, the built-in probe
 * recipe) after two epochs:
 *  - 7x7 patches at width 256 reach 83.1% where 4x4 patches at width 128,
 *    at the same speed, reach 82.0%;
 *  - no alignment term. The official weight 2 balances the alignment MSE
 *    against a cross-entropy over 8192 tokens; against this model's pixel
 *    MSE (about 0.2) it is two thirds of the loss, and with any weight from
 *    0.1 to 2 the probe stops at 83.5-83.8% where without it it reaches
 *    84.3-84.7% (CAE v2 drops the term for its continuous target too).
 *    Without the term the step skips the alignment pass: 20% faster;
 *  - lr 7.5e-4: 85.1% (5e-4: 85.0%; 1.5e-3: 84.5%, and 3e-3 with the
 *    alignment term collapses its MSE to 0.02 and the probe to 82%).
 * Neither a third epoch at 1.5e-3, nor 4 or 12 masked patches (block or
 * random), nor a 2-block regressor and decoder did better. */
static void builtin_defaults(cae_args *a, int with_model)
{
    cae_config *c = &a->model;
    a->builtin_data = 1;
    a->min_mask_patches_per_block = 4;
    a->second_input_size = 0; /* no tokenizer view: pixel target */
    a->crop_min_size = 0.5;   /* 28-pixel images cannot lose 92% and keep a garment */
    a->color_jitter = 0.0;
    a->batch_size = 64;
    a->epochs = 2;
    a->warmup_epochs = 0;
    a->warmup_steps = 200;
    a->lr = 7.5e-4;
    a->clip_grad = 3.0;
    a->save_ckpt_freq = 1;
    a->num_workers = 2;
    if (!with_model) /* --model picks an official size instead */
        return;
    a->model_name = "built-in (Fashion-MNIST)";
    c->input_size = 28; /* the images' own size: 4x4 patches of 7x7 */
    c->patch_size = 7;
    c->embed_dim = 256;
    c->depth = 4;
    c->num_heads = 8;
    c->mlp_ratio = 4.0;
    c->decoder_embed_dim = 256;
    c->regressor_depth = 1;
    c->decoder_depth = 1;
    c->decoder_num_heads = 8;
    c->num_mask_patches = 8; /* half of the 16 patches, as CAE's 98 of 196 */
    c->align_loss_weight = 0.0; /* see above; --align_loss_weight 2 for the full CAE loss */
}

static const flag_spec *find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static int takes_value(flag_kind k)
{
    return k == F_INT || k == F_LONG || k == F_DOUBLE || k == F_STRING || k == F_GEMM ||
           k == F_IGNORE_VALUE || k == F_ONLY || k == F_REFUSE_VALUE;
}

/* The one value each F_ONLY flag takes: what cae-cl does (compared as a
 * number where numeric, so 0.0 is 0). */
static const struct {
    const char *name, *value;
    int numeric;
} only[] = {
    {"data_set", "IMNET", 0},   {"update_freq", "1", 1},  {"accum_iter", "1", 1},
    {"drop", "0", 1},           {"attn_drop_rate", "0", 1}, {"crop_pct", "0.875", 1},
    {"remode", "pixel", 0},     {"recount", "1", 1},
    {"model_key", "model|module|state_dict", 0}, {"model_prefix", "", 0},
};

/* v against f's one value; -1 after one line naming the flag */
static int check_only(const flag_spec *f, const char *v)
{
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++) {
        char *end;
        double x;
        if (strcmp(only[i].name, f->name) != 0)
            continue;
        if (!only[i].numeric && strcmp(v, only[i].value) == 0)
            return 0;
        x = strtod(v, &end);
        if (only[i].numeric && *v != '\0' && *end == '\0' && x == strtod(only[i].value, NULL))
            return 0;
        break;
    }
    cae_errorf("--%s %s: %s", f->name, v, f->help);
    return -1;
}

/* Where a given value must lie, checked where it is parsed so that a bad
 * value is refused naming its flag before anything runs (--lr -1 used to
 * fail after a logged step; a negative --epochs ran for ever). Every
 * F_DOUBLE must also be finite: inf and nan parse, but no flag means them.
 * Flags not listed take any value of their type. */
typedef enum { R_NONNEG, R_POS, R_UNIT } flag_range; /* R_UNIT: [0, 1] */

static const struct {
    const char *name;
    flag_range range;
} ranges[] = {
    {"mlp_ratio", R_POS}, {"batch_size", R_POS}, {"epochs", R_POS},
    {"bucket_cap_mb", R_POS}, {"budget_s", R_POS},
    {"lr", R_NONNEG}, {"warmup_lr", R_NONNEG}, {"min_lr", R_NONNEG}, {"blr", R_NONNEG},
    {"weight_decay", R_NONNEG}, {"weight_decay_end", R_NONNEG}, {"clip_grad", R_NONNEG},
    {"opt_eps", R_NONNEG}, {"warmup_epochs", R_NONNEG}, {"start_epoch", R_NONNEG},
    {"num_workers", R_NONNEG}, {"layer_scale_init_value", R_NONNEG},
    {"decoder_layer_scale_init_value", R_NONNEG}, {"align_loss_weight", R_NONNEG},
    {"color_jitter", R_NONNEG}, {"mixup", R_NONNEG}, {"cutmix", R_NONNEG},
    {"init_scale", R_NONNEG}, {"save_freq", R_POS},
    {"drop_path", R_UNIT}, {"ratio_mask_patches", R_UNIT}, {"crop_min_size", R_UNIT},
    {"crop_max_size", R_UNIT}, {"momentum", R_UNIT}, {"layer_decay", R_UNIT},
    {"smoothing", R_UNIT}, {"mixup_prob", R_UNIT}, {"mixup_switch_prob", R_UNIT},
    {"reprob", R_UNIT}, {"max_bad_image_share", R_UNIT},
};

/* x, parsed from v, against f's range; -1 after one line naming the flag */
static int check_range(const flag_spec *f, const char *v, double x)
{
    static const char *const want[] = {"must not be negative", "must be positive",
                                       "must be in [0, 1]"};

    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        flag_range r = ranges[i].range;
        if (strcmp(ranges[i].name, f->name) != 0)
            continue;
        if ((r == R_NONNEG && x >= 0) || (r == R_POS && x > 0) ||
            (r == R_UNIT && x >= 0 && x <= 1))
            return 0;
        cae_errorf("--%s %s: %s", f->name, v, want[r]);
        return -1;
    }
    return 0;
}

static int set_value(cae_args *a, const flag_spec *f, const char *v)
{
    char *p = (char *)a + f->offset, *end;
    errno = 0;
    switch (f->kind) {
    case F_INT: {
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno || x < -2147483647L || x > 2147483647L) {
            cae_errorf("--%s %s: not an integer", f->name, v);
            return -1;
        }
        CAE_TRY(check_range(f, v, (double)x));
        *(int *)p = (int)x;
        return 0;
    }
    case F_LONG: {
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno) {
            cae_errorf("--%s %s: not an integer", f->name, v);
            return -1;
        }
        *(long *)p = x;
        return 0;
    }
    case F_DOUBLE: {
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno) {
            cae_errorf("--%s %s: not a number", f->name, v);
            return -1;
        }
        if (!isfinite(x)) {
            cae_errorf("--%s %s: must be a finite number", f->name, v);
            return -1;
        }
        CAE_TRY(check_range(f, v, x));
        *(double *)p = x;
        return 0;
    }
    case F_STRING:
        *(const char **)p = v;
        return 0;
    case F_GEMM:
        if (cae_gemm_choice_parse(v, (cae_gemm_choice *)p) != 0) {
            cae_errorf("--%s %s: expected auto, clblast or host", f->name, v);
            return -1;
        }
        return 0;
    case F_ONLY:
        return check_only(f, v);
    case F_REFUSE_SWITCH:
    case F_REFUSE_VALUE:
        cae_errorf("--%s: %s", f->name, f->help);
        return -1;
    default:
        return 0;
    }
}

/* One pass over argv; with only_model, applies just --model. */
static int scan(cae_args *a, int argc, char **argv, int only_model)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *value = NULL;
        const flag_spec *f;
        size_t len;
        if (strncmp(arg, "--", 2) != 0) {
            cae_errorf("unexpected argument '%s' (flags start with --; see --help)", arg);
            return -1;
        }
        name = arg + 2;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        f = find(name, len);
        if (!f) {
            cae_errorf("unknown flag --%.*s (see --help)", (int)len, name);
            return -1;
        }
        if (f->kind == F_IGNORE_LIST) {
            if (eq)
                continue;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                i++;
            continue;
        }
        if (takes_value(f->kind)) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else {
                cae_errorf("--%s needs a value", f->name);
                return -1;
            }
        } else if (eq) {
            cae_errorf("--%s takes no value", f->name);
            return -1;
        }
        if (only_model != (strcmp(f->name, "model") == 0))
            continue;
        if (f->kind == F_TRUE)
            *(int *)((char *)a + f->offset) = 1;
        else if (f->kind == F_FALSE)
            *(int *)((char *)a + f->offset) = 0;
        else if (set_value(a, f, value) != 0)
            return -1;
    }
    return 0;
}

int cae_args_given(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
            (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
            return 1;
    return 0;
}

/* The bytes of a flag's resolved value: a string's text, else the field. */
static uint64_t value_digest(const cae_args *a, const flag_spec *f)
{
    const char *field = (const char *)a + f->offset;
    switch (f->kind) {
    case F_STRING:
        return cae_digest_str(CAE_DIGEST_INIT, *(const char *const *)(const void *)field);
    case F_INT:
    case F_TRUE:
    case F_FALSE:
        return cae_digest(CAE_DIGEST_INIT, field, sizeof(int));
    case F_LONG:
        return cae_digest(CAE_DIGEST_INIT, field, sizeof(long));
    case F_DOUBLE:
        return cae_digest(CAE_DIGEST_INIT, field, sizeof(double));
    case F_GEMM:
        return cae_digest(CAE_DIGEST_INIT, field, sizeof(cae_gemm_choice));
    default:
        return 0;
    }
}

size_t cae_args_digests(const cae_args *a, uint64_t *digest, const char **name, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0] && n < max; i++) {
        const flag_spec *f = &flags[i];
        /* ignored flags hold nothing; loader threads are each rank's own */
        if (f->kind >= F_IGNORE_VALUE || strcmp(f->name, "num_workers") == 0)
            continue;
        digest[n] = value_digest(a, f);
        name[n++] = f->name;
    }
    return n;
}

int cae_args_parse(cae_args *a, int argc, char **argv)
{
    defaults(a);
    a->model_given = cae_args_given(argc, argv, "model");
    if (!cae_args_given(argc, argv, "data_path"))
        builtin_defaults(a, !a->model_given);
    CAE_TRY(scan(a, argc, argv, 1));
    if (a->model_given)
        CAE_TRY(cae_config_preset(&a->model, a->model_name));
    CAE_TRY(scan(a, argc, argv, 0));
    if (a->builtin_data && cae_args_given(argc, argv, "data_set")) {
        cae_errorf("--data_set IMNET needs --data_path (without it cae-cl uses Fashion-MNIST)");
        return -1;
    }
    return 0;
}

int cae_args_check_probe(const cae_args *a, const char *probe)
{
    const char *program = !probe ? "cae-cl-finetune"
                          : strcmp(probe, "standard") == 0 ? "cae-cl-linear"
                                                           : "cae-cl-attentive";
    if (!probe && a->enable_linear_eval) {
        cae_errorf("--enable_linear_eval: cae-cl-finetune trains the whole encoder (a frozen one: "
                   "cae-cl-linear or cae-cl-attentive)");
        return -1;
    }
    if (a->linear_type && (!probe || strcmp(a->linear_type, probe) != 0)) {
        cae_errorf("--linear_type %s: %s %s%s (standard: cae-cl-linear, attentive: "
                   "cae-cl-attentive)", a->linear_type, program,
                   probe ? "takes only " : "has no --linear_type", probe ? probe : "");
        return -1;
    }
    if (a->save_freq != 1 && (!probe || strcmp(probe, "standard") != 0)) {
        cae_errorf("--save_freq %d: a cae-cl-linear flag; %s writes its checkpoint every epoch",
                   a->save_freq, program);
        return -1;
    }
    return 0;
}

int cae_args_choose_target(cae_args *a, int random_labels)
{
    const char *type = a->discrete_vae_type;
    int grid = a->model.input_size / a->model.patch_size;
    if (!type)
        type = (a->discrete_vae_weight_path || random_labels) ? "dall-e" : "pixel";
    if (strcmp(type, "pixel") == 0) {
        a->model.pixel_target = 1;
        a->model.norm_pix_loss = a->norm_pix_loss;
        a->second_input_size = 0;
        return 0;
    }
    if (strcmp(type, "dall-e") != 0) {
        cae_errorf("--discrete_vae_type %s: expected dall-e or pixel", type);
        return -1;
    }
    if (random_labels)
        return 0;
    if (!a->discrete_vae_weight_path) {
        cae_errorf("--discrete_vae_type dall-e needs --discrete_vae_weight_path (cae-cl-convert-dall-e "
                   "makes it from the official encoder.pkl)");
        return -1;
    }
    if (a->second_input_size != 8 * grid) {
        cae_errorf("--second_input_size %d: the DALL-E tokenizer needs 8 x the patch grid (%d)",
                   a->second_input_size, 8 * grid);
        return -1;
    }
    return 0;
}

void cae_args_usage(FILE *out, const char *program, const char *extra)
{
    fprintf(out, "usage: %s [flags]\n%s\nflags (official CAE names; unused ones are accepted):\n",
            program, extra ? extra : "");
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        fprintf(out, "  --%-32s %s\n", flags[i].name, flags[i].help);
    fprintf(out, "environment: CAE_CL_PLATFORM, CAE_CL_DEVICE (index or name part), "
                 "CAE_CL_CACHE_DIR, CAE_CL_NO_CACHE=1, CAE_CL_KERNEL_DIR\n");
}

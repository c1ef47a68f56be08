/* cae-cl-linear: linear probing of a CAE encoder on one device, the C
 * counterpart of the official tools/run_linear.py (same flags).
 *
 * The encoder is frozen (--finetune CKPT, or 'random' for the baseline);
 * its feature (the cls token of the final norm, or with --use_mean_pooling
 * the mean of the patch tokens) goes through BatchNorm1d without affine
 * parameters and a linear head, trained with LARS (lr = --blr * batch /
 * 256, cosine with warmup, weight decay 0) on cross-entropy. Evaluation is
 * top-1/top-5 on the val split (ImageFolder DIR/val, or Fashion-MNIST's 10k
 * test images) with resize to input_size/0.875 and a center crop.
 *
 * The head is tiny: BN, linear and the loss run on the device, the LARS
 * step runs on the host over the read-back gradients (src/lars.c).
 * Validation features are computed once (the encoder is frozen and the
 * evaluation transform deterministic); with --cache_features the training
 * features are computed once too, without augmentation, and reused every
 * epoch. Without it every step augments its images (RandomResizedCrop +
 * flip) and runs the encoder.
 *
 * Every epoch writes <output_dir>/checkpoint-linear.safetensors (the head
 * under run_linear.py's keys head.0.running_{mean,var}, head.1.{weight,bias});
 * --eval --resume FILE evaluates such a head without training.
 */
#include "args.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/rng.h"
#include "encoder_eval.h"
#include "errors.h"
#include "lars.h"
#include "ops/batchnorm.h"
#include "ops/ops.h"
#include "safetensors.h"
#include "schedule.h"
#include "train_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    cae_args a;
    cae_ctx ctx;
    int have_ctx;
    cae_dataset *train, *val;
    cae_encoder_eval enc;
    int have_enc;
    cae_pool pool;
    size_t B, D, K, S;
    /* host */
    float *w, *b, *mu_w, *mu_b, *gw, *gb; /* head [K,D], [K] and LARS state */
    float *val_feat, *train_feat;         /* [n, D] */
    int32_t *val_labels, *train_labels;
    float *images, *feat, *logits;        /* one batch */
    int32_t *labels;
    /* device */
    cl_mem mem, in_mem, label_mem;
    cae_buf x, y, mean, rstd, run_mean, run_var, dw, db, hw, hb, logits_d, dlogits, row_loss,
        row_correct, lbl;
    FILE *log, *metrics;
} prober;

/* ---- data: the two transforms ---- */

static const float inet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float inet_std[3] = {0.229f, 0.224f, 0.225f};

static void normalize(const unsigned char *px, int S, int imagenet, float *view)
{
    for (int c = 0; c < 3; c++) {
        float m = imagenet ? inet_mean[c] : 0.5f, s = imagenet ? inet_std[c] : 0.5f;
        for (int i = 0; i < S * S; i++)
            view[(size_t)c * S * S + i] = ((float)px[i * 3 + c] / 255.0f - m) / s;
    }
}

/* Resize (shorter side to int(S / 0.875), bicubic, as torchvision's Resize
 * on a PIL image) and center crop S: the official evaluation transform.
 * *work grows as needed. */
static int eval_transform(const cae_image *img, int S, int imagenet, unsigned char **work,
                          size_t *work_size, float *view)
{
    int size = (int)((double)S / 0.875), ow, oh, top, left;
    double box[4] = {0, 0, img->width, img->height};
    unsigned char *crop;
    size_t need;
    if (img->width <= img->height) {
        ow = size;
        oh = (int)((double)size * img->height / img->width);
    } else {
        oh = size;
        ow = (int)((double)size * img->width / img->height);
    }
    if (ow < S || oh < S || ow > 65536 || oh > 65536) {
        cae_errorf("image of %dx%d: cannot resize for evaluation", img->width, img->height);
        return -1;
    }
    need = (size_t)ow * oh * 3 + (size_t)S * S * 3;
    if (need > *work_size) {
        unsigned char *w = realloc(*work, need);
        if (!w) {
            cae_errorf("out of host memory");
            return -1;
        }
        *work = w;
        *work_size = need;
    }
    CAE_TRY(cae_resize(img, box, ow, oh, CAE_FILTER_BICUBIC, *work));
    top = (int)lround((oh - S) / 2.0);
    left = (int)lround((ow - S) / 2.0);
    crop = *work + (size_t)ow * oh * 3;
    for (int r = 0; r < S; r++)
        memcpy(crop + (size_t)r * S * 3, *work + ((size_t)(top + r) * ow + left) * 3, (size_t)S * 3);
    normalize(crop, S, imagenet, view);
    return 0;
}

/* ---- the head on the device ---- */

static int head_init(prober *p)
{
    size_t B = p->B, D = p->D, K = p->K, used = 0;
    cae_buf *slots[] = {&p->y, &p->mean, &p->rstd, &p->run_mean, &p->run_var, &p->dw,
                        &p->logits_d, &p->dlogits, &p->row_loss, &p->row_correct};
    size_t sizes[] = {B * D, D, D, D, D, K * D + K + 16, B * K, B * K, B, B};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        slots[i]->off = used;
        used += (sizes[i] + 15) / 16 * 16;
    }
    CAE_TRY(cae_alloc(&p->ctx, used * 4, &p->mem));
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        slots[i]->mem = p->mem;
    /* weights and bias: host-written inputs in a buffer of their own, as the features */
    CAE_TRY(cae_alloc(&p->ctx, (B * D + K * D + K) * 4, &p->in_mem));
    p->x = (cae_buf){p->in_mem, 0};
    p->hw = (cae_buf){p->in_mem, B * D};
    p->hb = (cae_buf){p->in_mem, B * D + K * D};
    p->db = cae_buf_at(p->dw, K * D);
    CAE_TRY(cae_alloc(&p->ctx, B * 4, &p->label_mem));
    p->lbl = (cae_buf){p->label_mem, 0};
    CAE_TRY(cae_fill_zero(&p->ctx, p->run_mean, D));
    CAE_TRY(cae_fill_float(&p->ctx, p->run_var, 1.0f, D));
    return 0;
}

/* One training step of the head on n = B features; returns the mean loss. */
static int head_step(prober *p, const float *feat, const int32_t *labels, double lr, double *loss)
{
    cae_ctx *ctx = &p->ctx;
    size_t B = p->B, D = p->D, K = p->K;
    cae_lars opt;
    double s = 0;
    CAE_TRY(cae_write(ctx, p->x, feat, B * D * 4));
    CAE_TRY(cae_write(ctx, p->hw, p->w, K * D * 4));
    CAE_TRY(cae_write(ctx, p->hb, p->b, K * 4));
    CAE_TRY(cae_write(ctx, p->lbl, labels, B * 4));
    CAE_TRY(cae_batchnorm_forward_train(ctx, p->y, p->mean, p->rstd, p->run_mean, p->run_var, p->x,
                                        B, D, CAE_BN_EPS, CAE_BN_MOMENTUM));
    CAE_TRY(cae_linear_forward(ctx, p->logits_d, p->y, p->hw, p->hb, B, D, K));
    CAE_TRY(cae_cross_entropy(ctx, p->dlogits, p->row_loss, p->row_correct, p->logits_d, p->lbl,
                              (float)(1.0 / (double)B), B, K));
    CAE_TRY(cae_fill_zero(ctx, p->dw, K * D + K));
    /* no gradient flows further back: nothing before the BN trains */
    CAE_TRY(cae_linear_backward(ctx, cae_buf_null(), p->dw, p->db, p->dlogits, p->y, p->hw, B,
                                D, K, 0));
    CAE_TRY(cae_read(ctx, p->gw, p->dw, K * D * 4));
    CAE_TRY(cae_read(ctx, p->gb, p->db, K * 4));
    CAE_TRY(cae_read(ctx, p->logits, p->row_loss, B * 4));
    for (size_t i = 0; i < B; i++)
        s += p->logits[i];
    *loss = s / (double)B;
    cae_lars_defaults(&opt, lr);
    opt.weight_decay = 0.0;
    cae_lars_step(&opt, p->w, p->gw, p->mu_w, K * D, 2);
    cae_lars_step(&opt, p->b, p->gb, p->mu_b, K, 1);
    return 0;
}

typedef struct {
    double loss, acc1, acc5;
    size_t n;
} eval_result;

static int label_rank(const float *row, size_t K, size_t label)
{
    /* rank of the label's logit: how many classes score higher (ties go
     * to the lower index, as torch.topk's stable order on CPU) */
    int rank = 0;
    for (size_t k = 0; k < K; k++)
        if (row[k] > row[label] || (row[k] == row[label] && k < label))
            rank++;
    return rank;
}

static int evaluate(prober *p, eval_result *r)
{
    cae_ctx *ctx = &p->ctx;
    size_t n = cae_dataset_len(p->val), D = p->D, K = p->K, top5 = K < 5 ? K : 5;
    double loss = 0;
    size_t c1 = 0, c5 = 0;
    CAE_TRY(cae_write(ctx, p->hw, p->w, K * D * 4));
    CAE_TRY(cae_write(ctx, p->hb, p->b, K * 4));
    for (size_t s = 0; s < n; s += p->B) {
        size_t m = n - s < p->B ? n - s : p->B;
        CAE_TRY(cae_write(ctx, p->x, p->val_feat + s * D, m * D * 4));
        CAE_TRY(cae_batchnorm_forward_eval(ctx, p->y, p->run_mean, p->run_var, p->x, m, D,
                                           CAE_BN_EPS));
        CAE_TRY(cae_linear_forward(ctx, p->logits_d, p->y, p->hw, p->hb, m, D, K));
        CAE_TRY(cae_read(ctx, p->logits, p->logits_d, m * K * 4));
        for (size_t i = 0; i < m; i++) {
            const float *row = p->logits + i * K;
            size_t label = (size_t)p->val_labels[s + i];
            double mx = row[0], se = 0;
            int rank = label_rank(row, K, label);
            for (size_t k = 1; k < K; k++)
                mx = row[k] > mx ? row[k] : mx;
            for (size_t k = 0; k < K; k++)
                se += exp((double)row[k] - mx);
            loss += mx + log(se) - (double)row[label];
            c1 += rank < 1;
            c5 += (size_t)rank < top5;
        }
    }
    r->n = n;
    r->loss = loss / (double)n;
    r->acc1 = 100.0 * (double)c1 / (double)n;
    r->acc5 = 100.0 * (double)c5 / (double)n;
    return 0;
}

/* ---- the head's checkpoint: the official keys of run_linear.py's
 * model.head = Sequential(BatchNorm1d, Linear) ---- */

static int save_head(prober *p, int epoch)
{
    char path[4200], ep[32];
    float *rm = malloc(p->D * 4), *rv = malloc(p->D * 4);
    int64_t wshape[2] = {(int64_t)p->K, (int64_t)p->D}, bshape[1] = {(int64_t)p->K};
    int64_t dshape[1] = {(int64_t)p->D};
    cae_st_writer *w = cae_st_writer_new();
    int rc = -1;
    snprintf(path, sizeof path, "%s/checkpoint-linear.safetensors", p->a.output_dir);
    snprintf(ep, sizeof ep, "%d", epoch);
    if (!rm || !rv || !w) {
        cae_errorf("out of host memory");
        goto out;
    }
    if (cae_read(&p->ctx, rm, p->run_mean, p->D * 4) != 0 ||
        cae_read(&p->ctx, rv, p->run_var, p->D * 4) != 0)
        goto out;
    if (cae_st_writer_add(w, "head.0.running_mean", CAE_DT_F32, 1, dshape, rm) != 0 ||
        cae_st_writer_add(w, "head.0.running_var", CAE_DT_F32, 1, dshape, rv) != 0 ||
        cae_st_writer_add(w, "head.1.weight", CAE_DT_F32, 2, wshape, p->w) != 0 ||
        cae_st_writer_add(w, "head.1.bias", CAE_DT_F32, 1, bshape, p->b) != 0 ||
        cae_st_writer_meta(w, "format", "cae-cl-linear-head-1") != 0 ||
        cae_st_writer_meta(w, "epoch", ep) != 0 ||
        cae_st_writer_meta(w, "finetune", p->a.finetune) != 0 ||
        cae_st_writer_meta(w, "pooling", p->pool == CAE_POOL_CLS ? "cls" : "mean") != 0)
        goto out;
    rc = cae_st_writer_write(w, path);
out:
    cae_st_writer_free(w);
    free(rm);
    free(rv);
    return rc;
}

static int load_head(prober *p, const char *path)
{
    int64_t wshape[2] = {(int64_t)p->K, (int64_t)p->D}, bshape[1] = {(int64_t)p->K};
    int64_t dshape[1] = {(int64_t)p->D};
    const cae_st_tensor *rm, *rv, *w, *b;
    cae_st_file f;
    int rc = -1;
    if (cae_st_read(&f, path) != 0)
        return -1;
    rm = cae_st_expect(&f, "head.0.running_mean", CAE_DT_F32, 1, dshape);
    rv = rm ? cae_st_expect(&f, "head.0.running_var", CAE_DT_F32, 1, dshape) : NULL;
    w = rv ? cae_st_expect(&f, "head.1.weight", CAE_DT_F32, 2, wshape) : NULL;
    b = w ? cae_st_expect(&f, "head.1.bias", CAE_DT_F32, 1, bshape) : NULL;
    if (b) {
        memcpy(p->w, w->data, p->K * p->D * 4);
        memcpy(p->b, b->data, p->K * 4);
        if (cae_write(&p->ctx, p->run_mean, rm->data, p->D * 4) == 0 &&
            cae_write(&p->ctx, p->run_var, rv->data, p->D * 4) == 0)
            rc = 0;
    }
    cae_st_free(&f);
    return rc;
}

/* ---- features ---- */

typedef struct {
    cae_decoder *dec;
    cae_image img;
    unsigned char *work;
    size_t work_size;
    cae_augment_scratch *aug;
} loader_state;

/* Load image idx (eval transform, or with aug the training transform from
 * seed) into view; its label into *label. Unusable images are fatal here:
 * evaluation must see every image. */
static int load_one(prober *p, loader_state *ls, const cae_dataset *ds, size_t idx,
                    const cae_augment_cfg *aug, uint64_t seed, float *view, int32_t *label)
{
    int rc = cae_dataset_get(ds, idx, ls->dec, &ls->img);
    if (rc != 0) {
        cae_errorf("%s: image %zu cannot be used", cae_dataset_describe(ds), idx);
        return -1;
    }
    *label = cae_dataset_label(ds, idx);
    if (*label < 0 || (size_t)*label >= p->K) {
        cae_errorf("%s: label %d of image %zu is outside --nb_classes %zu",
                   cae_dataset_describe(ds), *label, idx, p->K);
        return -1;
    }
    if (aug)
        return cae_augment(aug, &ls->img, seed, ls->aug, view, NULL);
    return eval_transform(&ls->img, (int)p->S, p->a.imagenet_default_mean_and_std, &ls->work,
                          &ls->work_size, view);
}

/* Features of every image of ds (eval transform), in order. */
static int extract_all(prober *p, loader_state *ls, const cae_dataset *ds, float *feat,
                       int32_t *labels)
{
    size_t n = cae_dataset_len(ds), view = 3 * p->S * p->S;
    double t0 = cae_now_ms();
    for (size_t s = 0; s < n; s += p->B) {
        size_t m = n - s < p->B ? n - s : p->B;
        for (size_t i = 0; i < m; i++)
            CAE_TRY(load_one(p, ls, ds, s + i, NULL, 0, p->images + i * view, &labels[s + i]));
        CAE_TRY(cae_encoder_eval_forward(&p->enc, p->images, m, p->pool, feat + s * p->D));
    }
    printf("features of %s in %.1f s\n", cae_dataset_describe(ds), (cae_now_ms() - t0) / 1e3);
    fflush(stdout);
    return 0;
}

/* ---- the program ---- */

static int make_dir(const char *dir)
{
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp) {
        cae_errorf("--output_dir '%s': invalid", dir);
        return -1;
    }
    memcpy(tmp, dir, n + 1);
    for (char *c = tmp + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            cae_errorf("--output_dir %s: cannot create %s: %s", dir, tmp, strerror(errno));
            return -1;
        }
        *c = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        cae_errorf("--output_dir %s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static FILE *open_out(const char *dir, const char *name)
{
    char path[4200];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "a");
    if (!f)
        cae_errorf("%s: cannot open: %s", path, strerror(errno));
    return f;
}

static int given(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
            (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
            return 1;
    return 0;
}

static void *xcalloc(size_t n, size_t size, int *fail)
{
    void *v = calloc(n ? n : 1, size);
    if (!v)
        *fail = 1;
    return v;
}

/* trunc_normal_(std=0.01) as timm: cut at +-2 (absolute), i.e. plain normal */
static void init_head(prober *p)
{
    cae_rng r;
    cae_rng_seed(&r, (uint64_t)p->a.seed ^ 0x11ea2ULL);
    for (size_t i = 0; i < p->K * p->D; i++) {
        double v;
        do {
            double u1 = cae_rng_uniform(&r), u2 = cae_rng_uniform(&r);
            v = sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)) * cos(6.283185307179586 * u2) * 0.01;
        } while (v < -2.0 || v > 2.0);
        p->w[i] = (float)v;
    }
}

static int setup(prober *p, int argc, char **argv)
{
    cae_args *a = &p->a;
    cae_ctx_options opt = {.gemm = a->gemm};
    char desc[512];
    int fail = 0;

    /* run_linear.py's defaults (blr 0.1, 90 epochs, 10 warmup, batch 512)
     * where the pretraining ones differ. The built-in Fashion-MNIST run
     * trains on one small device: batch 256, so LARS (whose relative step
     * is lr * 0.001) gets blr 10 to make up for the official 16384-image
     * global batch, and 50 epochs (cheap with --cache_features) */
    if (!given(argc, argv, "blr"))
        a->blr = a->builtin_data ? 10.0 : 0.1;
    if (!given(argc, argv, "epochs"))
        a->epochs = a->builtin_data ? 50 : 90;
    if (!given(argc, argv, "warmup_epochs"))
        a->warmup_epochs = a->builtin_data ? 5 : 10;
    if (!given(argc, argv, "batch_size"))
        a->batch_size = a->builtin_data ? 256 : 512;
    if (!given(argc, argv, "output_dir"))
        a->output_dir = "output-linear";
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
    CAE_TRY(cae_config_finish(&a->model));
    p->pool = a->use_mean_pooling ? CAE_POOL_MEAN : CAE_POOL_CLS;
    p->B = (size_t)a->batch_size;
    p->D = (size_t)a->model.embed_dim;
    p->S = (size_t)a->model.input_size;
    CAE_TRY(make_dir(a->output_dir));
    CAE_TRY(cae_dataset_open_split(&p->train, a->data_path, "train"));
    CAE_TRY(cae_dataset_open_split(&p->val, a->data_path, "val"));
    p->K = a->nb_classes > 0 ? (size_t)a->nb_classes : cae_dataset_num_classes(p->train);
    if (cae_dataset_len(p->train) < p->B) {
        cae_errorf("--batch_size %zu: more than the %zu training images", p->B,
                   cae_dataset_len(p->train));
        return -1;
    }
    CAE_TRY(cae_ctx_init(&p->ctx, &opt));
    p->have_ctx = 1;
    cae_config_describe(&a->model, desc, sizeof desc);
    printf("device: %s (%s)\nencoder: %s\ntrain: %s\nval: %s\nfeatures: %s, classes %zu\n",
           p->ctx.device_name, p->ctx.platform_name, desc, cae_dataset_describe(p->train),
           cae_dataset_describe(p->val), p->pool == CAE_POOL_CLS ? "cls token" : "mean of patch tokens",
           p->K);
    CAE_TRY(cae_encoder_eval_init(&p->enc, &p->ctx, &a->model, p->B));
    p->have_enc = 1;
    CAE_TRY(cae_encoder_eval_load(&p->enc, a->finetune, (uint64_t)a->seed));
    printf("encoder weights: %s\n", strcmp(a->finetune, "random") == 0 ? "random (official init)"
                                                                          : a->finetune);
    fflush(stdout);
    p->w = xcalloc(p->K * p->D, sizeof *p->w, &fail);
    p->b = xcalloc(p->K, sizeof *p->b, &fail);
    p->mu_w = xcalloc(p->K * p->D, sizeof *p->mu_w, &fail);
    p->mu_b = xcalloc(p->K, sizeof *p->mu_b, &fail);
    p->gw = xcalloc(p->K * p->D, sizeof *p->gw, &fail);
    p->gb = xcalloc(p->K, sizeof *p->gb, &fail);
    p->val_feat = xcalloc(cae_dataset_len(p->val) * p->D, sizeof *p->val_feat, &fail);
    p->val_labels = xcalloc(cae_dataset_len(p->val), sizeof *p->val_labels, &fail);
    p->train_labels = xcalloc(cae_dataset_len(p->train), sizeof *p->train_labels, &fail);
    if (a->cache_features)
        p->train_feat = xcalloc(cae_dataset_len(p->train) * p->D, sizeof *p->train_feat, &fail);
    p->images = xcalloc(p->B * 3 * p->S * p->S, sizeof *p->images, &fail);
    p->feat = xcalloc(p->B * p->D, sizeof *p->feat, &fail);
    p->logits = xcalloc(p->B * (p->K > 1 ? p->K : 1), sizeof *p->logits, &fail);
    p->labels = xcalloc(p->B, sizeof *p->labels, &fail);
    if (fail) {
        cae_errorf("out of host memory for the features");
        return -1;
    }
    init_head(p);
    CAE_TRY(head_init(p));
    p->log = open_out(a->output_dir, "log.txt");
    p->metrics = open_out(a->output_dir, "metrics.jsonl");
    return p->log && p->metrics ? 0 : -1;
}

static int run(prober *p)
{
    cae_args *a = &p->a;
    loader_state ls = {0};
    cae_augment_cfg aug = {0};
    size_t n_train = cae_dataset_len(p->train), steps = n_train / p->B; /* drop_last */
    size_t *perm = NULL, view = 3 * p->S * p->S;
    cae_schedule sched = {0};
    double best = -1, t_start = cae_now_ms();
    int best_epoch = -1, rc = -1;
    uint64_t step = 0;

    ls.dec = cae_decoder_new();
    ls.aug = cae_augment_scratch_new();
    perm = malloc(n_train * sizeof *perm);
    if (!ls.dec || !ls.aug || !perm) {
        cae_errorf("out of host memory");
        goto out;
    }
    aug.input_size = (int)p->S;
    aug.crop_min = 0.08;
    aug.crop_max = 1.0;
    aug.interp = CAE_FILTER_BICUBIC;
    aug.second_interp = CAE_FILTER_BICUBIC;
    aug.imagenet_mean_std = a->imagenet_default_mean_and_std;
    if (cae_augment_check(&aug) != 0)
        goto out;
    sched.base = a->blr * (double)p->B / 256.0;
    sched.final = 0.0;
    sched.epochs = (size_t)a->epochs;
    sched.niter_per_ep = steps;
    sched.warmup_epochs = (size_t)a->warmup_epochs;
    sched.warmup_steps = -1;
    printf("lr %.6g (blr %.6g * batch %zu / 256), LARS, %d epochs (%d warmup) of %zu steps\n",
           sched.base, a->blr, p->B, a->epochs, a->warmup_epochs, steps);

    if (extract_all(p, &ls, p->val, p->val_feat, p->val_labels) != 0)
        goto out;
    if (a->eval) {
        eval_result ev;
        if (load_head(p, a->resume) != 0 || evaluate(p, &ev) != 0)
            goto out;
        printf("Accuracy of the head %s on the %zu test images: acc1 %.2f%% acc5 %.2f%% loss %.4f\n",
               a->resume, ev.n, ev.acc1, ev.acc5, ev.loss);
        fprintf(p->log, "{\"test_loss\": %.8g, \"test_acc1\": %.6g, \"test_acc5\": %.6g}\n",
                ev.loss, ev.acc1, ev.acc5);
        rc = fflush(p->log) == 0 ? 0 : -1;
        goto out;
    }
    if (a->cache_features) {
        printf("--cache_features: training features computed once, without augmentation "
               "(the evaluation transform), and reused every epoch\n");
        if (extract_all(p, &ls, p->train, p->train_feat, p->train_labels) != 0)
            goto out;
    }
    for (int epoch = 0; epoch < a->epochs; epoch++) {
        cae_rng r;
        double loss_sum = 0, lr = 0, t0 = cae_now_ms();
        eval_result ev;
        cae_rng_seed(&r, (uint64_t)a->seed * 1000003ULL + (uint64_t)epoch);
        for (size_t i = 0; i < n_train; i++)
            perm[i] = i;
        for (size_t i = n_train; i > 1; i--) {
            size_t j = (size_t)cae_rng_int(&r, 0, (int64_t)i - 1), t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
        for (size_t s = 0; s < steps; s++, step++) {
            double loss;
            lr = cae_schedule_at(&sched, step);
            for (size_t i = 0; i < p->B; i++) {
                size_t idx = perm[s * p->B + i];
                if (a->cache_features) {
                    memcpy(p->feat + i * p->D, p->train_feat + idx * p->D, p->D * 4);
                    p->labels[i] = p->train_labels[idx];
                } else if (load_one(p, &ls, p->train, idx, &aug, cae_rng_next(&r),
                                    p->images + i * view, &p->labels[i]) != 0) {
                    goto out;
                }
            }
            if (!a->cache_features &&
                cae_encoder_eval_forward(&p->enc, p->images, p->B, p->pool, p->feat) != 0)
                goto out;
            if (head_step(p, p->feat, p->labels, lr, &loss) != 0)
                goto out;
            if (!isfinite(loss)) {
                cae_errorf("epoch %d step %zu: loss is %g; stopping", epoch, s, loss);
                goto out;
            }
            loss_sum += loss;
        }
        if (evaluate(p, &ev) != 0)
            goto out;
        if (ev.acc1 > best) {
            best = ev.acc1;
            best_epoch = epoch;
        }
        printf("epoch %d: train_loss %.4f lr %.5g | test_loss %.4f acc1 %.2f%% acc5 %.2f%% on %zu "
               "images | %.1f s | max accuracy %.2f%%\n",
               epoch, loss_sum / (double)steps, lr, ev.loss, ev.acc1, ev.acc5, ev.n,
               (cae_now_ms() - t0) / 1e3, best);
        fflush(stdout);
        fprintf(p->log,
                "{\"train_lr\": %.8g, \"train_loss\": %.8g, \"test_loss\": %.8g, \"test_acc1\": "
                "%.6g, \"test_acc5\": %.6g, \"epoch\": %d, \"n_parameters\": %zu}\n",
                lr, loss_sum / (double)steps, ev.loss, ev.acc1, ev.acc5, epoch, p->K * p->D + p->K);
        fprintf(p->metrics,
                "{\"epoch\": %d, \"step\": %llu, \"train_loss\": %.8g, \"lr\": %.8g, \"test_loss\": "
                "%.8g, \"test_acc1\": %.6g, \"test_acc5\": %.6g, \"epoch_s\": %.3f}\n",
                epoch, (unsigned long long)step, loss_sum / (double)steps, lr, ev.loss, ev.acc1,
                ev.acc5, (cae_now_ms() - t0) / 1e3);
        if (save_head(p, epoch) != 0)
            goto out;
        if (fflush(p->log) != 0 || fflush(p->metrics) != 0) {
            cae_errorf("--output_dir %s: cannot write the logs: %s", a->output_dir, strerror(errno));
            goto out;
        }
    }
    printf("Max accuracy: %.2f%% at epoch %d (wall time %.1f s)\n", best, best_epoch,
           (cae_now_ms() - t_start) / 1e3);
    fprintf(p->log, "{\"max_accuracy\": %.6g, \"best_epoch\": %d}\n", best, best_epoch);
    rc = 0;
out:
    free(perm);
    free(ls.work);
    cae_image_free(&ls.img);
    if (ls.dec)
        cae_decoder_free(ls.dec);
    if (ls.aug)
        cae_augment_scratch_free(ls.aug);
    return rc;
}

static void teardown(prober *p)
{
    if (p->log)
        fclose(p->log);
    if (p->metrics)
        fclose(p->metrics);
    cae_release(&p->mem);
    cae_release(&p->in_mem);
    cae_release(&p->label_mem);
    if (p->have_enc)
        cae_encoder_eval_free(&p->enc);
    if (p->have_ctx)
        cae_ctx_free(&p->ctx);
    cae_dataset_free(p->train);
    cae_dataset_free(p->val);
    free(p->w);
    free(p->b);
    free(p->mu_w);
    free(p->mu_b);
    free(p->gw);
    free(p->gb);
    free(p->val_feat);
    free(p->train_feat);
    free(p->val_labels);
    free(p->train_labels);
    free(p->images);
    free(p->feat);
    free(p->logits);
    free(p->labels);
}

int main(int argc, char **argv)
{
    static prober p;
    int rc;
    if (cae_args_parse(&p.a, argc, argv) != 0)
        return 2;
    if (p.a.help) {
        cae_args_usage(stdout, "cae-cl-linear",
                       "linear probing of a CAE encoder (official tools/run_linear.py flags);\n"
                       "without --data_path: Fashion-MNIST's 60k/10k split with the built-in model");
        return 0;
    }
    if (p.a.list_devices)
        return cae_list_devices(stdout) == 0 ? 0 : 1;
    if (p.a.eval && (!p.a.resume || !p.a.resume[0])) {
        cae_errorf("--eval: give the head to evaluate with --resume (a checkpoint-linear.safetensors)");
        return 2;
    }
    rc = setup(&p, argc, argv) == 0 && run(&p) == 0 ? 0 : 1;
    teardown(&p);
    return rc;
}

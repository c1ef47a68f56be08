/* step_io.c: weights, batches and outputs of cae-cl-step as safetensors. */
#include "train/step_io.h"

#include "ops/ops.h"
#include "safetensors/safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int read_param(cae_model *m, const cae_param *p, float *host, int grad)
{
    const cae_arena *a = grad ? &m->grads : &m->params;
    return cae_read(m->ctx, host, (cae_buf){a->mem[p->chunk], p->off}, p->numel * 4);
}

/* Compare a derived tensor of the file with what it must be. */
static int check_derived(const char *path, const cae_st_tensor *t, const float *want, size_t n,
                         double tol)
{
    const float *got = t->data;
    if (t->dtype != CAE_DT_F32 || t->numel != n) {
        cae_errorf("%s: tensor '%s': expected F32 with %zu elements", path, t->name, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        float g;
        memcpy(&g, got + i, sizeof g);
        if (!(fabs((double)g - want[i]) <= tol)) {
            cae_errorf("%s: tensor '%s' element %zu is %g, but it is derived and must be %g", path,
                       t->name, i, (double)g, (double)want[i]);
            return -1;
        }
    }
    return 0;
}

static int check_pos_table(cae_model *m, const char *path, const cae_st_tensor *t, size_t width)
{
    size_t rows = (size_t)m->cfg.num_patches + 1;
    float *table = malloc(rows * width * sizeof *table);
    int rc;
    if (!table)
        return -1;
    rc = cae_sincos_table(table, (size_t)m->cfg.grid, width);
    if (rc == 0)
        rc = check_derived(path, t, table, rows * width, 1e-5);
    free(table);
    return rc;
}

/* alignment_encoder.X must equal encoder.X of the same file */
static int check_alignment_copy(const cae_st_file *f, const cae_st_tensor *t)
{
    char name[256];
    const cae_st_tensor *src;
    snprintf(name, sizeof name, "encoder.%s", t->name + strlen("alignment_encoder."));
    src = cae_st_find(f, name);
    if (!src || src->nbytes != t->nbytes || memcmp(src->data, t->data, t->nbytes) != 0) {
        cae_errorf("%s: tensor '%s' differs from '%s' (the alignment encoder shares the encoder's "
                   "weights)", f->path, t->name, name);
        return -1;
    }
    return 0;
}

static int is_frozen_gamma(const cae_model *m, const char *name)
{
    const char *tail;
    if (m->cfg.decoder_layer_scale_init_value > 0 ||
        strncmp(name, "regresser.regressor_blocks.", 27) != 0)
        return 0;
    tail = strrchr(name, '.');
    return tail && (strcmp(tail, ".gamma_1_cross") == 0 || strcmp(tail, ".gamma_2_cross") == 0);
}

static int load_weights_file(cae_model *m, const cae_st_file *f)
{
    size_t ones_n = (size_t)m->cfg.decoder_embed_dim;
    float *ones = malloc(ones_n * sizeof *ones);
    float **image = cae_arena_image_new(&m->table);
    int rc = -1;
    if (!ones || !image)
        goto out;
    for (size_t i = 0; i < ones_n; i++)
        ones[i] = 1.0f;
    /* every trainable tensor */
    for (size_t i = 0; i < m->table.n; i++) {
        const cae_param *p = &m->table.p[i];
        const cae_st_tensor *t = cae_st_expect(f, p->name, CAE_DT_F32, p->ndim, p->shape);
        if (!t)
            goto out;
        memcpy(image[p->chunk] + p->off, t->data, p->numel * 4);
    }
    /* everything else must be derived */
    for (size_t i = 0; i < f->n_tensors; i++) {
        const cae_st_tensor *t = &f->tensors[i];
        if (cae_params_find(&m->table, t->name))
            continue;
        if (strcmp(t->name, "encoder.pos_embed") == 0) {
            if (check_pos_table(m, f->path, t, (size_t)m->cfg.embed_dim) != 0)
                goto out;
        } else if (strcmp(t->name, "rd_pos_embed") == 0) {
            if (check_pos_table(m, f->path, t, (size_t)m->cfg.decoder_embed_dim) != 0)
                goto out;
        } else if (strncmp(t->name, "alignment_encoder.", 18) == 0) {
            if (check_alignment_copy(f, t) != 0)
                goto out;
        } else if (is_frozen_gamma(m, t->name)) {
            if (check_derived(f->path, t, ones, ones_n, 0.0) != 0)
                goto out;
        } else {
            cae_errorf("%s: tensor '%s' is not part of this model (check --model and the size flags)",
                       f->path, t->name);
            goto out;
        }
    }
    /* nothing reaches the device unless the whole file is acceptable */
    rc = cae_arena_write_image(m->ctx, &m->table, &m->params, image);
out:
    free(ones);
    cae_arena_image_free(&m->table, image);
    return rc;
}

int cae_step_load_weights(cae_model *m, const char *path)
{
    cae_st_file f;
    int rc;
    CAE_TRY(cae_st_read(&f, path));
    rc = load_weights_file(m, &f);
    cae_st_free(&f);
    return rc;
}

int cae_step_batch_size(const char *path, size_t *batch)
{
    cae_st_file f;
    const cae_st_tensor *t;
    CAE_TRY(cae_st_read(&f, path));
    t = cae_st_find(&f, "samples");
    if (!t || t->ndim != 4 || t->shape[0] <= 0) {
        cae_errorf("%s: tensor 'samples': missing or not [B,3,S,S]", path);
        cae_st_free(&f);
        return -1;
    }
    *batch = (size_t)t->shape[0];
    cae_st_free(&f);
    return 0;
}

static int load_batch_file(cae_model *m, const cae_st_file *f)
{
    const cae_config *c = &m->cfg;
    int64_t B = (int64_t)m->B, S = c->input_size, N = c->num_patches, M = c->num_mask_patches;
    int64_t sshape[4] = {B, 3, S, S}, mshape[2] = {B, N}, lshape[1] = {B * M};
    const cae_st_tensor *samples = cae_st_expect(f, "samples", CAE_DT_F32, 4, sshape);
    const cae_st_tensor *mask = cae_st_find(f, "bool_masked_pos");
    /* the pixel target needs no labels */
    const cae_st_tensor *labels =
        c->pixel_target ? NULL : cae_st_expect(f, "labels", CAE_DT_I64, 1, lshape);
    float *x = NULL;
    int32_t *lab = NULL;
    int rc = -1;

    if (!samples || (!labels && !c->pixel_target))
        return -1;
    if (!mask || (mask->dtype != CAE_DT_U8 && mask->dtype != CAE_DT_BOOL)) {
        cae_errorf("%s: tensor 'bool_masked_pos': missing or not U8/BOOL", f->path);
        return -1;
    }
    if (!cae_st_expect(f, "bool_masked_pos", mask->dtype, 2, mshape))
        return -1;
    x = malloc((size_t)(B * 3 * S * S) * sizeof *x);
    lab = malloc((size_t)(B * M) * sizeof *lab);
    if (!x || !lab)
        goto out;
    memcpy(x, samples->data, samples->nbytes);
    for (int64_t i = 0; labels && i < B * M; i++) {
        int64_t v;
        memcpy(&v, (const char *)labels->data + 8 * i, 8);
        if (v < 0 || v >= c->decoder_num_classes) {
            cae_errorf("%s: tensor 'labels': entry %lld is %lld, outside [0, %d)", f->path,
                       (long long)i, (long long)v, c->decoder_num_classes);
            goto out;
        }
        lab[i] = (int32_t)v;
    }
    for (int64_t b = 0; b < B; b++) {
        const unsigned char *row = (const unsigned char *)mask->data + b * N;
        int64_t ones = 0;
        for (int64_t n = 0; n < N; n++)
            ones += row[n] != 0;
        if (ones != M) {
            cae_errorf("%s: tensor 'bool_masked_pos': sample %lld masks %lld patches, expected "
                       "--num_mask_patches %lld", f->path, (long long)b, (long long)ones, (long long)M);
            goto out;
        }
    }
    rc = labels ? cae_model_set_batch(m, x, mask->data, lab)
                : cae_model_set_inputs(m, x, mask->data);
out:
    free(x);
    free(lab);
    return rc;
}

int cae_step_load_batch(cae_model *m, const char *path)
{
    cae_st_file f;
    int rc;
    CAE_TRY(cae_st_read(&f, path));
    rc = load_batch_file(m, &f);
    cae_st_free(&f);
    return rc;
}

static uint64_t next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t x = *s;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int cae_step_synthetic_batch(cae_model *m, uint64_t seed)
{
    const cae_config *c = &m->cfg;
    size_t B = m->B, S = (size_t)c->input_size, N = (size_t)c->num_patches;
    size_t M = (size_t)c->num_mask_patches, n = B * 3 * S * S;
    float *x = malloc(n * sizeof *x);
    unsigned char *mask = calloc(B * N, 1);
    int32_t *lab = malloc(B * M * sizeof *lab);
    size_t *perm = malloc(N * sizeof *perm);
    uint64_t s = seed;
    int rc = -1;
    if (!x || !mask || !lab || !perm) {
        cae_errorf("out of host memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) { /* Box-Muller */
        double u1 = ((double)(next(&s) >> 11) + 0.5) / 9007199254740992.0;
        double u2 = (double)(next(&s) >> 11) / 9007199254740992.0;
        x[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    for (size_t b = 0; b < B; b++) { /* partial Fisher-Yates: M random patches */
        for (size_t i = 0; i < N; i++)
            perm[i] = i;
        for (size_t i = 0; i < M; i++) {
            size_t j = i + (size_t)(next(&s) % (N - i)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
            mask[b * N + perm[i]] = 1;
        }
    }
    for (size_t i = 0; i < B * M; i++)
        lab[i] = (int32_t)(next(&s) % (uint64_t)c->decoder_num_classes);
    rc = c->pixel_target ? cae_model_set_inputs(m, x, mask) : cae_model_set_batch(m, x, mask, lab);
out:
    free(x);
    free(mask);
    free(lab);
    free(perm);
    return rc;
}

/* ---------------------------------------------------------------- outputs */

typedef struct {
    char name[CAE_PARAM_NAME_MAX + 8];
    int ndim;
    int64_t shape[4];
    size_t n;
    float *data;
} output;

typedef struct {
    output *o;
    size_t n;
} outputs;

static void outputs_free(outputs *os)
{
    for (size_t i = 0; i < os->n; i++)
        free(os->o[i].data);
    free(os->o);
}

static output *push(outputs *os, const char *name, int ndim, const int64_t *shape)
{
    output *o = &os->o[os->n++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->ndim = ndim;
    o->n = 1;
    for (int i = 0; i < ndim; i++) {
        o->shape[i] = shape[i];
        o->n *= (size_t)shape[i];
    }
    o->data = malloc((o->n ? o->n : 1) * sizeof *o->data);
    return o->data ? o : NULL;
}

static int scalar(outputs *os, const char *name, double v)
{
    output *o = push(os, name, 0, NULL);
    if (!o)
        return -1;
    o->data[0] = (float)v;
    return 0;
}

static int device(cae_model *m, outputs *os, const char *name, int ndim, const int64_t *shape,
                  cae_buf src)
{
    output *o = push(os, name, ndim, shape);
    if (!o)
        return -1;
    return cae_read(m->ctx, o->data, src, o->n * 4);
}

static int collect(cae_model *m, const cae_losses *l, outputs *os)
{
    const cae_config *c = &m->cfg;
    int64_t B = (int64_t)m->B, M = c->num_mask_patches, Dd = c->decoder_embed_dim;
    int64_t lshape[2] = {B * M, c->decoder_num_classes}, latent[3] = {B, M, Dd};
    os->o = calloc(m->table.n + 8, sizeof *os->o);
    if (!os->o)
        return -1;
    CAE_TRY(scalar(os, "loss", l->loss));
    CAE_TRY(scalar(os, "loss_main", l->loss_main));
    CAE_TRY(scalar(os, "loss_align", l->loss_align));
    if (!c->pixel_target) /* top-1 accuracy means nothing for a pixel target */
        CAE_TRY(scalar(os, "mlm_acc", l->mlm_acc));
    CAE_TRY(device(m, os, "logits", 2, lshape, m->logits));
    CAE_TRY(device(m, os, "latent_predict", 3, latent, m->latent_pred));
    if (cae_config_has_alignment(c)) /* else not computed (cae_step.c) */
        CAE_TRY(device(m, os, "latent_target", 3, latent, m->latent_target));
    for (size_t i = 0; i < m->table.n; i++) {
        const cae_param *p = &m->table.p[i];
        char name[CAE_PARAM_NAME_MAX + 8];
        output *o;
        snprintf(name, sizeof name, "grad/%s", p->name);
        o = push(os, name, p->ndim, p->shape);
        if (!o || read_param(m, p, o->data, 1) != 0)
            return -1;
    }
    return 0;
}

int cae_step_write_outputs(cae_model *m, const cae_losses *l, const char *path)
{
    outputs os = {0};
    cae_st_writer *w = cae_st_writer_new();
    int rc = -1;
    if (!w)
        return -1;
    if (collect(m, l, &os) != 0)
        goto out;
    for (size_t i = 0; i < os.n; i++)
        if (cae_st_writer_add(w, os.o[i].name, CAE_DT_F32, os.o[i].ndim, os.o[i].shape,
                              os.o[i].data) != 0)
            goto out;
    rc = cae_st_writer_write(w, path);
out:
    cae_st_writer_free(w);
    outputs_free(&os);
    return rc;
}

static double l2(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* The regressor's norm1_k.bias gradient is analytically zero (a shared
 * shift of all keys cancels in the softmax): judge it on the scale of the
 * matching norm1_k.weight gradient. */
static double reference_scale(const cae_st_file *f, const char *name, const float *want, size_t n)
{
    size_t len = strlen(name);
    double own = l2(want, n);
    if (len > 12 && strcmp(name + len - 12, "norm1_k.bias") == 0 &&
        strstr(name, "regressor_blocks")) {
        char wname[256];
        const cae_st_tensor *w;
        snprintf(wname, sizeof wname, "%.*sweight", (int)(len - 4), name);
        w = cae_st_find(f, wname);
        if (w && w->dtype == CAE_DT_F32) {
            float *tmp = malloc(w->nbytes);
            double s;
            if (!tmp)
                return own;
            memcpy(tmp, w->data, w->nbytes);
            s = l2(tmp, w->numel);
            free(tmp);
            return s > own ? s : own;
        }
    }
    return own;
}

static int compare(const cae_st_file *f, outputs *os, double tol, FILE *report)
{
    size_t failed = 0, worst_at = 0;
    double worst = 0;
    for (size_t i = 0; i < os->n; i++) {
        const output *o = &os->o[i];
        const cae_st_tensor *t = cae_st_expect(f, o->name, CAE_DT_F32, o->ndim, o->shape);
        float *want;
        double diff = 0, max_abs = 0, scale, rel;
        if (!t) {
            failed++;
            continue;
        }
        want = malloc((o->n ? o->n : 1) * sizeof *want);
        if (!want)
            return -1;
        memcpy(want, t->data, o->n * 4);
        for (size_t k = 0; k < o->n; k++) {
            double d = (double)o->data[k] - want[k];
            diff += d * d;
            if (!(fabs(d) <= max_abs))
                max_abs = fabs(d);
        }
        scale = reference_scale(f, o->name, want, o->n);
        rel = sqrt(diff) / (scale > 1e-30 ? scale : 1e-30);
        if (isnan(rel) || (scale <= 1e-30 && sqrt(diff) > 1e-30))
            rel = INFINITY;
        fprintf(report, "  %-64s max_abs %.3e  rel_l2 %.3e  %s\n", o->name, max_abs, rel,
                rel <= tol ? "ok" : "FAIL");
        if (!(rel <= tol))
            failed++;
        if (!(rel <= worst)) {
            worst = rel;
            worst_at = i;
        }
        free(want);
    }
    if (failed) {
        fprintf(report, "FAIL: %zu of %zu tensors above relative L2 %.1e\n", failed, os->n, tol);
        return 1;
    }
    fprintf(report, "PASS: %zu tensors, worst relative L2 %.3e (%s)\n", os->n, worst,
            os->n ? os->o[worst_at].name : "-");
    return 0;
}

int cae_step_check(cae_model *m, const cae_losses *l, const char *path, double tolerance,
                   FILE *report)
{
    cae_st_file f;
    outputs os = {0};
    int rc;
    CAE_TRY(cae_st_read(&f, path));
    if (collect(m, l, &os) != 0) {
        rc = -1;
        goto out;
    }
    rc = compare(&f, &os, tolerance, report);
out:
    outputs_free(&os);
    cae_st_free(&f);
    return rc;
}

/* checkpoint.c: training checkpoints as safetensors files (checkpoint.h).
 *
 * A checkpoint is a host image of each arena written through the
 * safetensors writer (atomic: temporary file, fsync, rename). The model
 * tensors keep their official keys; the AdamW moments sit under
 * optimizer.exp_avg.<key> and optimizer.exp_avg_sq.<key>. Reading validates
 * the whole file against the parameter table before any arena is written,
 * and the same validation, with its message kept rather than printed,
 * decides which checkpoint of a folder auto-resume takes.
 */
#include "train/checkpoint.h"

#include "runtime/errors.h"
#include "safetensors/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_ARENAS 3
/* the file's name of each arena's tensors: key = prefix + official key */
static const char *const arena_prefix[N_ARENAS] = {"", "optimizer.exp_avg.", "optimizer.exp_avg_sq."};
static const char *const arena_what[N_ARENAS] = {"parameter", "exp_avg", "exp_avg_sq"};

#define NAME_MAX_LEN (CAE_PARAM_NAME_MAX + 32)
#define WHY_MAX 512

/* Keep a message for the caller to print (as an error or as a warning). */
static int why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int why_set(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

static void arena_key(char *out, int arena, const char *name)
{
    snprintf(out, NAME_MAX_LEN, "%s%s", arena_prefix[arena], name);
}

/* Both moments or neither, each arena with the table's buffer count. */
static int check_arenas(const char *path, const cae_param_table *t, const cae_arena *const *a)
{
    if ((a[1] == NULL) != (a[2] == NULL)) {
        cae_errorf("%s: give both AdamW moments (exp_avg, exp_avg_sq) or neither", path);
        return -1;
    }
    for (int k = 0; k < N_ARENAS; k++)
        if (a[k] && a[k]->n != t->n_chunks) {
            cae_errorf("%s: the %s arena has %d buffers but its table lays out %d", path,
                       arena_what[k], a[k]->n, t->n_chunks);
            return -1;
        }
    return 0;
}

/* ---- saving ---------------------------------------------------------------- */

static int meta_u64(cae_st_writer *w, const char *key, uint64_t v)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, v);
    return cae_st_writer_meta(w, key, text);
}

static int add_metadata(cae_st_writer *w, const char *path, const cae_param_table *t,
                        const cae_ckpt_meta *meta)
{
    static const cae_ckpt_meta none; /* a weights file saved without metadata */
    if (!meta)
        meta = &none;
    if (strnlen(meta->args, sizeof meta->args) == sizeof meta->args) {
        cae_errorf("%s: the argument list in the checkpoint metadata is not terminated", path);
        return -1;
    }
    CAE_TRY(cae_st_writer_meta(w, "format", CAE_CHECKPOINT_FORMAT));
    CAE_TRY(meta_u64(w, "epoch", meta->epoch));
    CAE_TRY(meta_u64(w, "step", meta->step));
    CAE_TRY(meta_u64(w, "seed", meta->seed));
    CAE_TRY(meta_u64(w, "adam_steps", meta->adam_steps));
    CAE_TRY(meta_u64(w, "steps_per_epoch", meta->steps_per_epoch));
    CAE_TRY(cae_st_writer_meta(w, "args", meta->args));
    /* a summary of the model for people reading the header */
    CAE_TRY(meta_u64(w, "n_params", (uint64_t)t->total));
    return 0;
}

int cae_checkpoint_save(const char *path, cae_ctx *ctx, const cae_param_table *t,
                        const cae_arena *params, const cae_arena *exp_avg,
                        const cae_arena *exp_avg_sq, const cae_ckpt_meta *meta)
{
    const cae_arena *arenas[N_ARENAS] = {params, exp_avg, exp_avg_sq};
    cae_st_writer *w = NULL;
    float **image = NULL;
    char name[NAME_MAX_LEN];
    int rc = -1;

    CAE_TRY(check_arenas(path, t, arenas));
    w = cae_st_writer_new();
    image = cae_arena_image_new(t);
    if (!w || !image)
        goto out;
    /* one image serves each arena in turn: the writer keeps its own copy */
    for (int k = 0; k < N_ARENAS; k++) {
        if (!arenas[k])
            continue;
        CAE_TRY_GOTO(cae_arena_read_image(ctx, t, arenas[k], image), out);
        for (size_t i = 0; i < t->n; i++) {
            const cae_param *p = &t->p[i];
            arena_key(name, k, p->name);
            CAE_TRY_GOTO(cae_st_writer_add(w, name, CAE_DT_F32, p->ndim, p->shape,
                                           image[p->chunk] + p->off), out);
        }
    }
    CAE_TRY_GOTO(add_metadata(w, path, t, meta), out);
    rc = cae_st_writer_write(w, path);
out:
    cae_arena_image_free(t, image);
    cae_st_writer_free(w);
    return rc;
}

/* ---- validation ------------------------------------------------------------ */

static void shape_text(char *out, size_t size, int ndim, const int64_t *shape)
{
    size_t used = 0;
    used += (size_t)snprintf(out, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < size)
        snprintf(out + used, size - used, "]");
}

static int check_tensor(const cae_st_tensor *st, const cae_param *p, char *why)
{
    char got[160], want[160];
    int same = st->dtype == CAE_DT_F32 && st->ndim == p->ndim;
    for (int i = 0; same && i < p->ndim; i++)
        same = st->shape[i] == p->shape[i];
    if (same)
        return 0;
    shape_text(got, sizeof got, st->ndim, st->shape);
    shape_text(want, sizeof want, p->ndim, p->shape);
    return why_set(why, "tensor '%s' is %s %s, but this model's is F32 %s", st->name,
                   cae_dtype_name(st->dtype), got, want);
}

/* The table entry a key of the file stands for, and in which arena. */
static const cae_param *file_key_entry(const cae_param_table *t, const char *name, int *arena)
{
    for (int k = N_ARENAS - 1; k >= 0; k--) {
        size_t len = strlen(arena_prefix[k]);
        if (strncmp(name, arena_prefix[k], len) == 0) {
            *arena = k;
            return cae_params_find(t, name + len);
        }
    }
    return NULL;
}

/* A regressor layer scale that is not trained (decoder layer scale 0): the
 * official state_dict keeps it as frozen ones. */
static int is_frozen_gamma(const char *name)
{
    const char *tail = strrchr(name, '.');
    return strncmp(name, "regresser.regressor_blocks.", 27) == 0 && tail &&
           (strcmp(tail, ".gamma_1_cross") == 0 || strcmp(tail, ".gamma_2_cross") == 0);
}

/* Tensors the official state_dict holds that our model derives: accepted
 * and ignored (frozen gammas must be the ones they stand for). */
static int check_derived(const cae_st_tensor *st, char *why)
{
    if (strcmp(st->name, "encoder.pos_embed") == 0 || strcmp(st->name, "rd_pos_embed") == 0 ||
        strncmp(st->name, "alignment_encoder.", 18) == 0)
        return 0;
    if (is_frozen_gamma(st->name)) {
        if (st->dtype != CAE_DT_F32)
            return why_set(why, "tensor '%s' is %s, expected F32 ones", st->name,
                           cae_dtype_name(st->dtype));
        for (size_t i = 0; i < st->numel; i++) {
            float v;
            memcpy(&v, (const char *)st->data + 4 * i, 4);
            if (v != 1.0f)
                return why_set(why, "tensor '%s' is trained (element %zu is %g), but this model "
                               "keeps it frozen at 1 (decoder layer scale 0)", st->name, i,
                               (double)v);
        }
        return 0;
    }
    return why_set(why, "tensor '%s' is not part of this model (a checkpoint of another model "
                   "size?)", st->name);
}

/* A decimal uint64 with nothing else around it. */
static int parse_u64(const char *text, uint64_t *out)
{
    size_t digits = strspn(text, "0123456789");
    unsigned long long v;
    char *end;
    if (digits == 0 || digits > 20 || text[digits] != '\0')
        return -1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int read_metadata(const cae_st_file *f, const cae_param_table *t, cae_ckpt_meta *m,
                         char *why)
{
    static const char *const keys[] = {"epoch", "step", "seed", "adam_steps"};
    uint64_t *fields[] = {&m->epoch, &m->step, &m->seed, &m->adam_steps};
    const char *args = cae_st_meta(f, "args"), *np = cae_st_meta(f, "n_params");
    const char *spe = cae_st_meta(f, "steps_per_epoch");
    uint64_t n;

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = cae_st_meta(f, keys[i]);
        if (!v || parse_u64(v, fields[i]) != 0)
            return why_set(why, "metadata '%s' is %s%s%s, expected an unsigned decimal", keys[i],
                           v ? "'" : "", v ? v : "missing", v ? "'" : "");
    }
    /* absent from files written before it was recorded */
    if (spe && parse_u64(spe, &m->steps_per_epoch) != 0)
        return why_set(why, "metadata 'steps_per_epoch' is '%s', expected an unsigned decimal", spe);
    if (!args)
        return why_set(why, "metadata 'args' is missing");
    if (strlen(args) >= sizeof m->args)
        return why_set(why, "metadata 'args' is %zu bytes, more than the %zu this build keeps",
                       strlen(args), sizeof m->args - 1);
    strcpy(m->args, args);
    if (np && (parse_u64(np, &n) != 0 || n != (uint64_t)t->total))
        return why_set(why, "metadata 'n_params' is '%s', but this model has %zu parameters", np,
                       t->total);
    return 0;
}

/* Is the whole file right for this table? moments: the AdamW state must be
 * there too. A file whose format metadata is not a cae-cl checkpoint's (a
 * conversion, a fixture) is a weights file, which holds only the model.
 * Fills m (zeros for a weights file). */
static int validate(const cae_st_file *f, const cae_param_table *t, int moments,
                    cae_ckpt_meta *m, char *why)
{
    const char *format = cae_st_meta(f, "format");
    char name[NAME_MAX_LEN];

    int checkpoint = format && strcmp(format, CAE_CHECKPOINT_FORMAT) == 0;

    memset(m, 0, sizeof *m);
    if (format && !checkpoint && strncmp(format, "cae-cl-checkpoint-", 18) == 0)
        return why_set(why, "format '%s', but this build reads '%s'", format,
                       CAE_CHECKPOINT_FORMAT);
    if (!checkpoint && moments)
        return why_set(why, "format %s%s%s, not '%s': a weights file, not a training checkpoint, "
                       "so it holds no optimizer state to resume from", format ? "'" : "",
                       format ? format : "metadata missing", format ? "'" : "",
                       CAE_CHECKPOINT_FORMAT);
    /* every tensor the model needs, named in table order */
    for (size_t i = 0; i < t->n; i++)
        for (int k = 0; k < (moments ? N_ARENAS : 1); k++) {
            const cae_st_tensor *st;
            arena_key(name, k, t->p[i].name);
            st = cae_st_find(f, name);
            if (!st)
                return why_set(why, "tensor '%s' is missing%s", name,
                               k ? " (the AdamW state is needed to resume)" : "");
            if (check_tensor(st, &t->p[i], why) != 0)
                return -1;
        }
    /* and nothing the model does not know */
    for (size_t i = 0; i < f->n_tensors; i++) {
        const cae_st_tensor *st = &f->tensors[i];
        int k = 0;
        const cae_param *p = file_key_entry(t, st->name, &k);
        if (p) {
            if (check_tensor(st, p, why) != 0)
                return -1;
        } else if (k != 0) { /* the moment of a tensor this model lacks */
            return why_set(why, "tensor '%s' is not part of this model (a checkpoint of another "
                           "model size?)", st->name);
        } else if (check_derived(st, why) != 0) {
            return -1;
        }
    }
    return checkpoint ? read_metadata(f, t, m, why) : 0;
}

/* ---- loading --------------------------------------------------------------- */

static int load_file(const cae_st_file *f, cae_ctx *ctx, const cae_param_table *t,
                     const cae_arena *const *arenas)
{
    float **image = cae_arena_image_new(t);
    char name[NAME_MAX_LEN];
    int rc = 0;
    if (!image)
        return -1;
    for (int k = 0; k < N_ARENAS && rc == 0; k++) {
        if (!arenas[k])
            continue;
        for (size_t i = 0; i < t->n; i++) {
            const cae_param *p = &t->p[i];
            arena_key(name, k, p->name);
            memcpy(image[p->chunk] + p->off, cae_st_find(f, name)->data, p->numel * 4);
        }
        rc = cae_arena_write_image(ctx, t, arenas[k], image);
    }
    cae_arena_image_free(t, image);
    return rc;
}

int cae_checkpoint_load(const char *path, cae_ctx *ctx, const cae_param_table *t,
                        const cae_arena *params, const cae_arena *exp_avg,
                        const cae_arena *exp_avg_sq, cae_ckpt_meta *meta)
{
    const cae_arena *arenas[N_ARENAS] = {params, exp_avg, exp_avg_sq};
    cae_ckpt_meta *m;
    cae_st_file f;
    char why[WHY_MAX];
    int rc = -1;

    CAE_TRY(check_arenas(path, t, arenas));
    m = malloc(sizeof *m);
    if (!m) {
        cae_errorf("%s: out of host memory", path);
        return -1;
    }
    if (cae_st_read(&f, path) != 0) {
        free(m);
        return -1;
    }
    if (validate(&f, t, exp_avg != NULL, m, why) != 0)
        cae_errorf("%s: %s", path, why);
    else if (load_file(&f, ctx, t, arenas) == 0)
        rc = 0;
    if (rc == 0 && meta)
        *meta = *m;
    cae_st_free(&f);
    free(m);
    return rc;
}

/* ---- the newest checkpoint of a folder ------------------------------------- */

typedef struct {
    uint64_t epoch;
    char *name;
} candidate;

/* checkpoint-<digits>.safetensors exactly (PATH.tmp.<pid> leftovers of the
 * writer do not match) */
static int checkpoint_name(const char *name, uint64_t *epoch)
{
    const char *digits = name + strlen("checkpoint-");
    size_t n;
    if (strncmp(name, "checkpoint-", strlen("checkpoint-")) != 0)
        return 0;
    n = strspn(digits, "0123456789");
    /* 19 digits always fit in 64 bits */
    if (n == 0 || n > 19 || strcmp(digits + n, ".safetensors") != 0)
        return 0;
    *epoch = 0;
    for (size_t i = 0; i < n; i++)
        *epoch = 10 * *epoch + (uint64_t)(digits[i] - '0');
    return 1;
}

static int candidate_cmp(const void *pa, const void *pb)
{
    const candidate *a = pa, *b = pb;
    if (a->epoch != b->epoch)
        return a->epoch > b->epoch ? -1 : 1; /* newest first */
    return strcmp(a->name, b->name);
}


/* The checkpoint-<N>.safetensors names in dir, newest first; 1 if the
 * folder does not exist. */
static int list_candidates(const char *dir, candidate **out, size_t *count)
{
    candidate *list = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    DIR *d = opendir(dir);

    *out = NULL;
    *count = 0;
    if (!d) {
        if (errno == ENOENT)
            return 1;
        cae_errorf("%s: cannot open the checkpoint folder: %s", dir, strerror(errno));
        return -1;
    }
    for (errno = 0; (e = readdir(d)) != NULL; errno = 0) {
        uint64_t epoch;
        if (!checkpoint_name(e->d_name, &epoch))
            continue;
        if (n == cap) {
            candidate *grown = realloc(list, (cap = cap ? 2 * cap : 16) * sizeof *grown);
            if (!grown)
                break;
            list = grown;
        }
        list[n].epoch = epoch;
        list[n].name = strdup(e->d_name);
        if (!list[n].name)
            break;
        n++;
    }
    if (e != NULL || errno != 0) {
        cae_errorf("%s: cannot list the checkpoint folder: %s", dir,
                   e ? "out of host memory" : strerror(errno));
        closedir(d);
        while (n > 0)
            free(list[--n].name);
        free(list);
        return -1;
    }
    closedir(d);
    if (n > 0) /* list is NULL for an empty folder; qsort's must not be */
        qsort(list, n, sizeof *list, candidate_cmp);
    *out = list;
    *count = n;
    return 0;
}

int cae_checkpoint_latest(const char *dir, const cae_param_table *t, char *path, size_t size)
{
    candidate *list;
    size_t n;
    cae_ckpt_meta *m = malloc(sizeof *m);
    char why[WHY_MAX];
    int rc;

    if (!m) {
        cae_errorf("%s: out of host memory", dir);
        return -1;
    }
    rc = list_candidates(dir, &list, &n);
    if (rc != 0) {
        free(m);
        return rc;
    }
    rc = 1;
    for (size_t i = 0; i < n && rc == 1; i++) {
        char *full = malloc(strlen(dir) + strlen(list[i].name) + 2);
        cae_st_file f;
        if (!full) {
            cae_errorf("%s: out of host memory", dir);
            rc = -1;
            break;
        }
        sprintf(full, "%s/%s", dir, list[i].name);
        /* the header alone: its offsets are checked against the file's
         * size, so a truncated file is skipped; cae_checkpoint_load reads
         * the chosen one whole */
        if (cae_st_read_header_quiet(&f, full, why, sizeof why) != 0) {
            cae_errorf("warning: skipping %s: %s", full, why);
        } else {
            /* a whole file of another model is no reason to start afresh
             * and overwrite it: an error, not a skip */
            rc = validate(&f, t, 1, m, why) == 0 ? 0 : -1;
            if (rc != 0)
                cae_errorf("%s: %s", full, why);
            else if (strlen(full) >= size) {
                cae_errorf("%s: the path is longer than the %zu bytes the caller allows", full, size);
                rc = -1;
            } else {
                strcpy(path, full);
            }
            cae_st_free(&f);
        }
        free(full);
    }
    for (size_t i = 0; i < n; i++)
        free(list[i].name);
    free(list);
    free(m);
    return rc;
}

int cae_checkpoint_path(char *path, size_t size, const char *dir, const char *tag)
{
    int n = snprintf(path, size, "%s/checkpoint-%s.safetensors", dir, tag);
    if (n < 0 || (size_t)n >= size) {
        cae_errorf("--output_dir %s: path too long", dir);
        return -1;
    }
    return 0;
}

int cae_checkpoint_epoch_path(char *path, size_t size, const char *dir, uint64_t epoch)
{
    char tag[24];
    snprintf(tag, sizeof tag, "%" PRIu64, epoch);
    return cae_checkpoint_path(path, size, dir, tag);
}

void cae_checkpoint_remove(const char *dir, uint64_t epoch)
{
    char path[4200];
    if (cae_checkpoint_epoch_path(path, sizeof path, dir, epoch) != 0)
        return;
    if (unlink(path) != 0 && errno != ENOENT)
        fprintf(stderr, "warning: cannot remove %s: %s\n", path, strerror(errno));
}

int cae_checkpoint_args(char *out, size_t size, int argc, char **argv)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < argc; i++) {
        int n;
        if (used + 2 >= size)
            return 1;
        n = snprintf(out + used, size - used, "%s%s", i ? " " : "", argv[i]);
        if (n < 0 || (size_t)n >= size - used)
            return 1; /* cut: snprintf kept what fits */
        used += (size_t)n;
    }
    return 0;
}

int cae_checkpoint_resume_from(const char *resume, int auto_resume, const char *dir,
                               const cae_param_table *t, char *found, size_t size,
                               const char **from)
{
    int r;
    *from = resume;
    if (resume || !auto_resume)
        return 0;
    r = cae_checkpoint_latest(dir, t, found, size);
    if (r < 0)
        return -1;
    *from = r == 0 ? found : NULL;
    return 0;
}

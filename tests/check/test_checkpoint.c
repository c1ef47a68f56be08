/* test_checkpoint.c: saving, loading and finding training checkpoints.
 *
 * A tiny model's three arenas (parameters, exp_avg, exp_avg_sq) are filled
 * with random values (plus NaN with a payload, -0, a denormal and inf) and
 * go through a file and back bit for bit. Every refusal (another model size,
 * a truncated file, a weights file where moments are needed) must print one
 * line naming the file and the tensor and leave the arenas as they were.
 * Failed saves (read-only folder, file-size limit, a folder in the way)
 * leave no partial file and keep an older checkpoint intact. Device suite:
 * runs with CK_FORK=no.
 */
#include "model/cae_config.h"
#include "train/checkpoint.h"
#include "tests/common/fixture.h"
#include "model/params.h"
#include "runtime/runtime.h"
#include "safetensors/safetensors.h"
#include "tests/common/testutil.h"
#include "tests/common/tinymodel.h"

#include "tests/common/capture.h"
#include "tests/common/scratch.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* small buffers, so the tiny model's arenas span several */
#define SPLIT_CHUNK_BYTES 32768

typedef struct {
    cae_param_table t;
    cae_arena a[3]; /* parameters, exp_avg, exp_avg_sq */
} model;

static char base[256]; /* this test's scratch folder */

static void model_new(model *m, int embed_dim, int depth, size_t chunk_bytes)
{
    cae_config c;
    tu_tiny_pretrain_config(&c, embed_dim, depth, 24);
    ck_assert_int_eq(cae_params_build(&m->t, &c, chunk_bytes ? chunk_bytes
                                                             : cae_params_chunk_limit(tu_ctx())), 0);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(cae_arena_alloc(tu_ctx(), &m->t, &m->a[k]), 0);
}

static void model_free(model *m)
{
    for (int k = 0; k < 3; k++)
        cae_arena_free(&m->a[k]);
    cae_params_free(&m->t);
}

/* Random arenas; the first tensor also gets values a lossy path would
 * change: NaN with a payload, -0, the smallest denormal, inf. */
static void model_fill(model *m, unsigned seed)
{
    static const uint32_t special[] = {0x7fc01234u, 0x80000000u, 0x00000001u, 0x7f800000u};
    const cae_param *p0 = &m->t.p[0];
    ck_assert_uint_ge(p0->numel, 4);
    for (int k = 0; k < 3; k++) {
        float **image = cae_arena_image_new(&m->t);
        ck_assert_ptr_nonnull(image);
        for (int c = 0; c < m->t.n_chunks; c++)
            tu_random(image[c], m->t.chunk_elems[c], -2.0f, 2.0f, seed * 101u + (unsigned)(7 * k + c));
        memcpy(image[p0->chunk] + p0->off, special, sizeof special);
        ck_assert_int_eq(cae_arena_write_image(tu_ctx(), &m->t, &m->a[k], image), 0);
        cae_arena_image_free(&m->t, image);
    }
}

static float **snapshot(const model *m, int k)
{
    float **image = cae_arena_image_new(&m->t);
    ck_assert_ptr_nonnull(image);
    ck_assert_int_eq(cae_arena_read_image(tu_ctx(), &m->t, &m->a[k], image), 0);
    return image;
}

/* Every tensor of arena ka of a equals arena kb of b, bit for bit (the two
 * tables describe the same model, maybe split differently). */
static void assert_same_tensors(const model *a, int ka, const model *b, int kb)
{
    float **ia = snapshot(a, ka), **ib = snapshot(b, kb);
    ck_assert_uint_eq(a->t.n, b->t.n);
    for (size_t i = 0; i < a->t.n; i++) {
        const cae_param *pa = &a->t.p[i], *pb = cae_params_find(&b->t, pa->name);
        ck_assert_ptr_nonnull(pb);
        ck_assert_msg(memcmp(ia[pa->chunk] + pa->off, ib[pb->chunk] + pb->off, pa->numel * 4) == 0,
                      "arena %d, tensor %s differs after the round trip", ka, pa->name);
    }
    cae_arena_image_free(&a->t, ia);
    cae_arena_image_free(&b->t, ib);
}

/* Whole buffers, padding included: nothing was written at all. */
static void assert_unchanged(const model *m, float **before[3])
{
    for (int k = 0; k < 3; k++) {
        float **now = snapshot(m, k);
        for (int c = 0; c < m->t.n_chunks; c++)
            ck_assert_msg(memcmp(now[c], before[k][c], m->t.chunk_elems[c] * 4) == 0,
                          "arena %d buffer %d changed by a refused load", k, c);
        cae_arena_image_free(&m->t, now);
    }
}

/* ---- scratch files and captured stderr ---- */

static void scratch_setup(void)
{
    scratch_make(base, sizeof base, "checkpoint");
    /* others may search it: the read-only test drops root to nobody */
    ck_assert_int_eq(chmod(base, 0755), 0);
}

static void scratch_teardown(void)
{
    capture_abandon(); /* a test failed while capturing */
    scratch_remove(base);
}

static void in_base(char *out, size_t size, const char *name)
{
    ck_assert_int_lt(snprintf(out, size, "%s/%s", base, name), (int)size);
}

static char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* One line that contains each of the given texts. */
static void assert_one_line(const char *text, const char *a, const char *b)
{
    ck_assert_msg(count_lines(text) == 1, "expected one line, got: %s", text);
    ck_assert_msg(strstr(text, a) != NULL, "'%s' not named in: %s", a, text);
    ck_assert_msg(!b || strstr(text, b) != NULL, "'%s' not named in: %s", b, text);
}

/* Entries of a folder other than . and .. (and stderr.txt). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
             strcmp(e->d_name, "stderr.txt") != 0;
    closedir(d);
    return n;
}

static int save_model(const char *path, const model *m, const cae_ckpt_meta *meta)
{
    return cae_checkpoint_save(path, tu_ctx(), &m->t, &m->a[0], &m->a[1], &m->a[2], meta);
}

/* ---- tests ---- */

START_TEST(test_round_trip)
{
    model src, dst, wonly;
    char path[300];
    cae_ckpt_meta *meta = calloc(1, sizeof *meta), *back = calloc(1, sizeof *back);
    cae_st_file f;
    char want[32];

    ck_assert(meta && back);
    model_new(&src, 16, 1, SPLIT_CHUNK_BYTES);
    ck_assert_int_gt(src.t.n_chunks, 1);
    /* the file does not depend on how the arenas are split */
    model_new(&dst, 16, 1, 0);
    model_new(&wonly, 16, 1, 0);
    model_fill(&src, 1);
    model_fill(&dst, 2);
    model_fill(&wonly, 3);
    meta->epoch = 7;
    meta->step = 123456789012ull;
    meta->seed = UINT64_MAX;                 /* would not survive a double */
    meta->adam_steps = (1ull << 53) + 1;
    snprintf(meta->args, sizeof meta->args, "--exp_name \"q\\x\" --data_path /d/\xc3\xbc\t--epochs 3");
    in_base(path, sizeof path, "checkpoint-7.safetensors");

    ck_assert_int_eq(save_model(path, &src, meta), 0);
    ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &dst.t, &dst.a[0], &dst.a[1], &dst.a[2],
                                         back), 0);
    for (int k = 0; k < 3; k++)
        assert_same_tensors(&src, k, &dst, k);
    ck_assert(back->epoch == meta->epoch && back->step == meta->step);
    ck_assert(back->seed == meta->seed && back->adam_steps == meta->adam_steps);
    ck_assert_str_eq(back->args, meta->args);

    /* the file itself: official keys, moments under optimizer.*, metadata */
    ck_assert_int_eq(cae_st_read(&f, path), 0);
    ck_assert_uint_eq(f.n_tensors, 3 * src.t.n);
    ck_assert_ptr_nonnull(cae_st_find(&f, "encoder.blocks.0.attn.qkv.weight"));
    ck_assert_ptr_nonnull(cae_st_find(&f, "optimizer.exp_avg.mask_token"));
    ck_assert_ptr_nonnull(cae_st_find(&f, "optimizer.exp_avg_sq.decoder.head.bias"));
    ck_assert_str_eq(cae_st_meta(&f, "format"), CAE_CHECKPOINT_FORMAT);
    ck_assert_str_eq(cae_st_meta(&f, "seed"), "18446744073709551615");
    snprintf(want, sizeof want, "%zu", src.t.total);
    ck_assert_str_eq(cae_st_meta(&f, "n_params"), want);
    cae_st_free(&f);

    /* the model alone from a full checkpoint; meta is optional */
    ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &wonly.t, &wonly.a[0], NULL, NULL, NULL), 0);
    assert_same_tensors(&src, 0, &wonly, 0);

    model_free(&src);
    model_free(&dst);
    model_free(&wonly);
    free(meta);
    free(back);
}
END_TEST

START_TEST(test_weights_only)
{
    model src, dst;
    char path[300], fixture[1024], *err;
    float **before[3];
    cae_ckpt_meta meta;
    cae_st_file f;

    model_new(&src, 16, 1, SPLIT_CHUNK_BYTES);
    model_new(&dst, 16, 1, 0);
    model_fill(&src, 4);
    model_fill(&dst, 5);
    in_base(path, sizeof path, "weights.safetensors");
    ck_assert_int_eq(cae_checkpoint_save(path, tu_ctx(), &src.t, &src.a[0], NULL, NULL, NULL), 0);
    ck_assert_int_eq(cae_st_read(&f, path), 0);
    ck_assert_uint_eq(f.n_tensors, src.t.n);
    ck_assert_str_eq(cae_st_meta(&f, "epoch"), "0");
    cae_st_free(&f);

    /* resuming needs the moments: refused, naming the first one missing */
    for (int k = 0; k < 3; k++)
        before[k] = snapshot(&dst, k);
    capture_begin(base);
    ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &dst.t, &dst.a[0], &dst.a[1], &dst.a[2],
                                         &meta), -1);
    err = capture_end();
    assert_one_line(err, path, "optimizer.exp_avg.encoder.cls_token");
    free(err);
    assert_unchanged(&dst, before);
    ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &dst.t, &dst.a[0], NULL, NULL, &meta), 0);
    assert_same_tensors(&src, 0, &dst, 0);
    ck_assert(meta.epoch == 0 && meta.args[0] == '\0');

    /* the conformance fixture: official keys plus derived tables, no
     * format metadata: a weights file */
    tu_src_path(fixture, sizeof fixture, "tests/fixtures/tiny/weights.safetensors");
    ck_assert_int_eq(cae_checkpoint_load(fixture, tu_ctx(), &dst.t, &dst.a[0], NULL, NULL, &meta), 0);
    tu_fx_read_path(&f, fixture);
    {
        float **img = snapshot(&dst, 0);
        for (size_t i = 0; i < dst.t.n; i++) {
            const cae_param *p = &dst.t.p[i];
            ck_assert_msg(memcmp(img[p->chunk] + p->off, tu_fx_find(&f, "%s", p->name)->data,
                                 p->numel * 4) == 0, "fixture tensor %s", p->name);
        }
        cae_arena_image_free(&dst.t, img);
    }
    cae_st_free(&f);
    capture_begin(base);
    ck_assert_int_eq(cae_checkpoint_load(fixture, tu_ctx(), &dst.t, &dst.a[0], &dst.a[1], &dst.a[2],
                                         NULL), -1);
    err = capture_end();
    assert_one_line(err, fixture, "format");
    free(err);

    for (int k = 0; k < 3; k++)
        cae_arena_image_free(&dst.t, before[k]);
    model_free(&src);
    model_free(&dst);
}
END_TEST

/* A checkpoint of another size: wider (shapes differ), deeper (tensors
 * missing) or shallower (tensors left over) than the model. */
START_TEST(test_other_model_refused)
{
    static const struct {
        int file_embed, file_depth, embed, depth;
        const char *named;
    } cases[] = {
        {16, 1, 32, 1, "'encoder.cls_token'"},
        {16, 1, 16, 2, "'encoder.blocks.1.norm1.weight'"},
        {16, 2, 16, 1, "'encoder.blocks.1."},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        model file_model, m;
        float **before[3];
        char path[300], *err;
        in_base(path, sizeof path, "other.safetensors");
        model_new(&file_model, cases[c].file_embed, cases[c].file_depth, 0);
        model_new(&m, cases[c].embed, cases[c].depth, SPLIT_CHUNK_BYTES);
        model_fill(&file_model, 10 + (unsigned)c);
        model_fill(&m, 20 + (unsigned)c);
        ck_assert_int_eq(save_model(path, &file_model, NULL), 0);
        for (int k = 0; k < 3; k++)
            before[k] = snapshot(&m, k);

        capture_begin(base);
        ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &m.t, &m.a[0], &m.a[1], &m.a[2], NULL),
                         -1);
        err = capture_end();
        assert_one_line(err, path, cases[c].named);
        free(err);
        /* the model alone is refused too */
        capture_begin(base);
        ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &m.t, &m.a[0], NULL, NULL, NULL), -1);
        err = capture_end();
        assert_one_line(err, path, cases[c].named);
        free(err);
        assert_unchanged(&m, before);

        for (int k = 0; k < 3; k++)
            cae_arena_image_free(&m.t, before[k]);
        model_free(&file_model);
        model_free(&m);
    }
}
END_TEST

START_TEST(test_truncated_refused)
{
    /* cut into the data, into the last tensor's last element, into the
     * length field */
    static const int cut[] = {1000, 1, -4};
    model m;
    float **before[3];
    char path[300], *err;
    struct stat sb;

    model_new(&m, 16, 1, SPLIT_CHUNK_BYTES);
    in_base(path, sizeof path, "checkpoint-1.safetensors");
    for (size_t c = 0; c < sizeof cut / sizeof cut[0]; c++) {
        model_fill(&m, 30);
        ck_assert_int_eq(save_model(path, &m, NULL), 0);
        ck_assert_int_eq(stat(path, &sb), 0);
        ck_assert_int_eq(truncate(path, cut[c] < 0 ? -cut[c] : sb.st_size - cut[c]), 0);
        model_fill(&m, 31);
        for (int k = 0; k < 3; k++)
            before[k] = snapshot(&m, k);
        capture_begin(base);
        ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &m.t, &m.a[0], &m.a[1], &m.a[2], NULL),
                         -1);
        err = capture_end();
        assert_one_line(err, path, NULL);
        free(err);
        assert_unchanged(&m, before);
        for (int k = 0; k < 3; k++)
            cae_arena_image_free(&m.t, before[k]);
    }
    model_free(&m);
}
END_TEST

START_TEST(test_latest)
{
    model m, other;
    char dir[300], path[600], want[600], name[600], *err;
    struct stat sb;

    model_new(&m, 16, 1, SPLIT_CHUNK_BYTES);
    in_base(dir, sizeof dir, "out");
    /* no folder yet, then an empty one: nothing to resume */
    ck_assert_int_eq(cae_checkpoint_latest(dir, &m.t, path, sizeof path), 1);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(cae_checkpoint_latest(dir, &m.t, path, sizeof path), 1);

    model_fill(&m, 40);
    /* 2 and 10: numeric order, not the names' (2 > 10 as text) */
    snprintf(name, sizeof name, "%s/checkpoint-2.safetensors", dir);
    ck_assert_int_eq(save_model(name, &m, NULL), 0);
    snprintf(want, sizeof want, "%s/checkpoint-10.safetensors", dir);
    ck_assert_int_eq(save_model(want, &m, NULL), 0);
    /* newer but truncated */
    snprintf(name, sizeof name, "%s/checkpoint-11.safetensors", dir);
    ck_assert_int_eq(save_model(name, &m, NULL), 0);
    ck_assert_int_eq(stat(name, &sb), 0);
    ck_assert_int_eq(truncate(name, sb.st_size / 2), 0);
    /* a writer's leftover (whole, so only its name can rule it out) and junk */
    snprintf(name, sizeof name, "%s/checkpoint-12.safetensors.tmp.4242", dir);
    ck_assert_int_eq(save_model(name, &m, NULL), 0);
    snprintf(name, sizeof name, "%s/checkpoint-x.safetensors", dir);
    ck_assert_int_eq(save_model(name, &m, NULL), 0);
    snprintf(name, sizeof name, "%s/checkpoint-13.safetensors.bak", dir);
    ck_assert_int_eq(save_model(name, &m, NULL), 0);

    capture_begin(base);
    ck_assert_int_eq(cae_checkpoint_latest(dir, &m.t, path, sizeof path), 0);
    err = capture_end();
    ck_assert_str_eq(path, want);
    assert_one_line(err, "checkpoint-11.safetensors", "warning");
    free(err);
    /* too small a buffer for the path is an error, not a silent cut */
    ck_assert_int_eq(cae_checkpoint_latest(dir, &m.t, path, 8), -1);

    /* a whole checkpoint of another model is an error naming the tensor,
     * not a reason to start afresh and overwrite it */
    model_new(&other, 32, 1, 0);
    model_fill(&other, 41);
    snprintf(name, sizeof name, "%s/checkpoint-20.safetensors", dir);
    ck_assert_int_eq(save_model(name, &other, NULL), 0);
    capture_begin(base);
    ck_assert_int_eq(cae_checkpoint_latest(dir, &m.t, path, sizeof path), -1);
    err = capture_end();
    assert_one_line(err, "checkpoint-20.safetensors", "'encoder.cls_token'");
    free(err);

    model_free(&m);
    model_free(&other);
}
END_TEST

START_TEST(test_read_only_folder)
{
    model m;
    char dir[300], path[400], *err;
    int rc, dropped = 0;

    model_new(&m, 16, 1, SPLIT_CHUNK_BYTES);
    model_fill(&m, 50);
    in_base(dir, sizeof dir, "ro");
    ck_assert_int_eq(mkdir(dir, 0555), 0);
    ck_assert_int_eq(chmod(dir, 0555), 0);
    snprintf(path, sizeof path, "%s/checkpoint-1.safetensors", dir);
    capture_begin(base);
    /* root writes anywhere: act as nobody for the save */
    if (geteuid() == 0) {
        ck_assert_int_eq(seteuid(65534), 0);
        dropped = 1;
    }
    rc = save_model(path, &m, NULL);
    if (dropped)
        ck_assert_int_eq(seteuid(0), 0);
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    assert_one_line(err, path, NULL);
    free(err);
    ck_assert_int_eq(count_entries(dir), 0);
    model_free(&m);
}
END_TEST

START_TEST(test_failed_save_keeps_old)
{
    model m;
    char path[300], *old, *now, *err;
    size_t old_size, now_size;
    struct rlimit saved, small;
    struct sigaction ignore, saved_action;
    int rc;

    model_new(&m, 16, 1, SPLIT_CHUNK_BYTES);
    model_fill(&m, 60);
    in_base(path, sizeof path, "checkpoint-3.safetensors");
    ck_assert_int_eq(save_model(path, &m, NULL), 0);
    old = read_all(path, &old_size);
    ck_assert_uint_gt(old_size, 65536);

    /* a disk that fills up midway: writes past 16 KiB fail with EFBIG */
    model_fill(&m, 61);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 16384;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ck_assert_int_eq(sigaction(SIGXFSZ, &ignore, &saved_action), 0);
    capture_begin(base);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    rc = save_model(path, &m, NULL);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    err = capture_end();
    ck_assert_int_eq(sigaction(SIGXFSZ, &saved_action, NULL), 0);
    ck_assert_int_eq(rc, -1);
    assert_one_line(err, path, NULL);
    free(err);
    now = read_all(path, &now_size);
    ck_assert_uint_eq(now_size, old_size);
    ck_assert_msg(memcmp(old, now, old_size) == 0, "the old checkpoint changed");
    ck_assert_int_eq(count_entries(base), 1); /* no temporary file left */
    free(now);

    /* a folder where the file should go: refused, the folder stays */
    {
        char dirpath[300];
        struct stat sb;
        in_base(dirpath, sizeof dirpath, "checkpoint-4.safetensors");
        ck_assert_int_eq(mkdir(dirpath, 0755), 0);
        capture_begin(base);
        rc = save_model(dirpath, &m, NULL);
        err = capture_end();
        ck_assert_int_eq(rc, -1);
        assert_one_line(err, dirpath, NULL);
        free(err);
        ck_assert_int_eq(stat(dirpath, &sb), 0);
        ck_assert(S_ISDIR(sb.st_mode));
        ck_assert_int_eq(count_entries(base), 2);
    }
    free(old);
    model_free(&m);
}
END_TEST

/* Official files keep the regressor's layer scales as frozen ones when the
 * decoder layer scale is 0 (our table has no such tensors): accepted when
 * they are ones, refused when they were trained. */
START_TEST(test_frozen_gammas)
{
    static const char *const gammas[] = {"regresser.regressor_blocks.0.gamma_1_cross",
                                         "regresser.regressor_blocks.0.gamma_2_cross"};
    model m;
    cae_config c;
    cae_st_file f;
    float ones[16];
    char path[300], *err;
    int64_t shape[1] = {16};

    tu_tiny_pretrain_config(&c, 16, 1, 24);
    c.decoder_layer_scale_init_value = 0;
    ck_assert_int_eq(cae_params_build(&m.t, &c, cae_params_chunk_limit(tu_ctx())), 0);
    ck_assert_ptr_null(cae_params_find(&m.t, gammas[0]));
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(cae_arena_alloc(tu_ctx(), &m.t, &m.a[k]), 0);
    model_fill(&m, 70);
    for (int i = 0; i < 16; i++)
        ones[i] = 1.0f;
    in_base(path, sizeof path, "official.safetensors");
    for (int trained = 0; trained < 2; trained++) {
        cae_st_writer *w = cae_st_writer_new();
        ck_assert_int_eq(cae_checkpoint_save(path, tu_ctx(), &m.t, &m.a[0], NULL, NULL, NULL), 0);
        ck_assert_int_eq(cae_st_read(&f, path), 0);
        for (size_t i = 0; i < f.n_tensors; i++)
            ck_assert_int_eq(cae_st_writer_add(w, f.tensors[i].name, f.tensors[i].dtype,
                                               f.tensors[i].ndim, f.tensors[i].shape,
                                               f.tensors[i].data), 0);
        cae_st_free(&f);
        ones[5] = trained ? 0.5f : 1.0f;
        for (int g = 0; g < 2; g++)
            ck_assert_int_eq(cae_st_writer_add(w, gammas[g], CAE_DT_F32, 1, shape, ones), 0);
        ck_assert_int_eq(cae_st_writer_write(w, path), 0);
        cae_st_writer_free(w);
        capture_begin(base);
        ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &m.t, &m.a[0], NULL, NULL, NULL),
                         (trained ? -1 : 0));
        err = capture_end();
        if (trained)
            assert_one_line(err, path, gammas[0]);
        else
            ck_assert_str_eq(err, "");
        free(err);
    }
    model_free(&m);
}
END_TEST

START_TEST(test_bad_arguments)
{
    model m;
    char path[300], *err;
    model_new(&m, 16, 1, 0);
    in_base(path, sizeof path, "checkpoint-1.safetensors");
    /* one moment without the other */
    capture_begin(base);
    ck_assert_int_eq(cae_checkpoint_save(path, tu_ctx(), &m.t, &m.a[0], &m.a[1], NULL, NULL), -1);
    ck_assert_int_eq(cae_checkpoint_load(path, tu_ctx(), &m.t, &m.a[0], NULL, &m.a[2], NULL), -1);
    err = capture_end();
    ck_assert_int_eq(count_lines(err), 2);
    ck_assert_ptr_nonnull(strstr(err, path));
    free(err);
    ck_assert_int_eq(count_entries(base), 0);
    model_free(&m);
}
END_TEST

/* The programs' file names: dir/checkpoint-<tag or epoch>.safetensors; a
 * folder too long for the buffer is one line naming --output_dir, never a
 * cut name that would write somewhere else. */
START_TEST(test_program_paths)
{
    char path[64], dir[80], *err;
    size_t room = sizeof path - 1 - strlen("/checkpoint-7.safetensors");

    ck_assert_int_eq(cae_checkpoint_epoch_path(path, sizeof path, "out", 12), 0);
    ck_assert_str_eq(path, "out/checkpoint-12.safetensors");
    ck_assert_int_eq(cae_checkpoint_path(path, sizeof path, "out", "linear"), 0);
    ck_assert_str_eq(path, "out/checkpoint-linear.safetensors");
    /* a name of exactly sizeof path - 1 characters fits; one more does not */
    memset(dir, 'd', room);
    dir[room] = '\0';
    ck_assert_int_eq(cae_checkpoint_epoch_path(path, sizeof path, dir, 7), 0);
    ck_assert_uint_eq(strlen(path), sizeof path - 1);
    capture_begin(base);
    ck_assert_int_eq(cae_checkpoint_epoch_path(path, sizeof path, dir, 17), -1);
    err = capture_end();
    assert_one_line(err, "--output_dir", "too long");
    free(err);
}
END_TEST

/* The command line recorded in a checkpoint: argv joined by spaces, cut
 * (and said to be cut) where the buffer ends. */
START_TEST(test_program_args)
{
    char *argv[] = {"cae-cl-train", "--lr", "1e-3", "--output_dir", "out"};
    const char *full = "cae-cl-train --lr 1e-3 --output_dir out";
    char out[64];
    ck_assert_int_eq(cae_checkpoint_args(out, sizeof out, 5, argv), 0);
    ck_assert_str_eq(out, full);
    /* cut: a terminated prefix of the whole line */
    ck_assert_int_eq(cae_checkpoint_args(out, 20, 5, argv), 1);
    ck_assert_uint_lt(strlen(out), 20);
    ck_assert_int_eq(strncmp(out, full, strlen(out)), 0);
    ck_assert_int_eq(cae_checkpoint_args(out, sizeof out, 0, argv), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

/* Which checkpoint a run resumes from: --resume wins, no auto-resume means
 * none, auto-resume the newest whole one of the folder; removing an epoch's
 * file is quiet when it is already gone. */
START_TEST(test_program_resume)
{
    model m;
    char dir[300], found[600], want[600];
    const char *from = "unset";

    model_new(&m, 16, 1, 0);
    in_base(dir, sizeof dir, "out");
    ck_assert_int_eq(cae_checkpoint_resume_from("given.safetensors", 1, dir, &m.t, found,
                                                sizeof found, &from), 0);
    ck_assert_str_eq(from, "given.safetensors");
    ck_assert_int_eq(cae_checkpoint_resume_from(NULL, 0, dir, &m.t, found, sizeof found, &from),
                     0);
    ck_assert_ptr_null(from);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(cae_checkpoint_resume_from(NULL, 1, dir, &m.t, found, sizeof found, &from),
                     0);
    ck_assert_ptr_null(from);

    model_fill(&m, 42);
    ck_assert_int_eq(cae_checkpoint_epoch_path(want, sizeof want, dir, 3), 0);
    ck_assert_int_eq(save_model(want, &m, NULL), 0);
    ck_assert_int_eq(cae_checkpoint_resume_from(NULL, 1, dir, &m.t, found, sizeof found, &from),
                     0);
    ck_assert_ptr_nonnull(from);
    ck_assert_str_eq(from, want);

    cae_checkpoint_remove(dir, 3);
    ck_assert_int_eq(access(want, F_OK), -1);
    cae_checkpoint_remove(dir, 3); /* already gone: no error */
    ck_assert_int_eq(cae_checkpoint_resume_from(NULL, 1, dir, &m.t, found, sizeof found, &from),
                     0);
    ck_assert_ptr_null(from);
    model_free(&m);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tu_tcase(s, "checkpoint", 300);
    tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
    TU_ADD_TESTS(tc, test_round_trip, test_weights_only, test_other_model_refused,
                 test_truncated_refused, test_latest, test_read_only_folder,
                 test_failed_save_keeps_old, test_frozen_gammas, test_bad_arguments,
                 test_program_paths, test_program_args, test_program_resume);
    return s;
}

TU_MAIN(checkpoint_suite)

/* test_conformance.c: cae-cl-step against the PyTorch fixtures.
 *
 * For every fixture in tests/fixtures (written by tools/reference), runs
 *   cae-cl-step $(cat args.txt) --weights .. --batch .. --check expected
 * and requires exit 0 (every tensor within relative L2 1e-4): on the
 * device's own path (--gemm auto, its kernel shapes), on the GEMM back end
 * auto does not pick where the device runs it, and with the kernel shapes
 * its defaults do not take. The device is asked as cae-cl-step will see it
 * (CAE_CL_NATIVE_KERNELS included; tests/shell/gpu-mode.sh runs the suite
 * under CAE_CL_NATIVE_KERNELS=0). Also: one run with the arenas split into
 * small buffers, and the smallest fixture under oclgrind, where any report
 * fails the test.
 */
#include "tests/common/hostutil.h"
#include "runtime/device.h"
#include "runtime/gemm.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 128

static const char *srcdir(void)
{
    const char *s = getenv("CAE_TOP_SRCDIR");
    return s && *s ? s : ".";
}

static const char *builddir(void)
{
    const char *s = getenv("CAE_TOP_BUILDDIR");
    return s && *s ? s : ".";
}

/* Split args.txt into argv words (the file holds one line of flags). */
static int read_args(const char *fixture, char *buf, size_t size, char **argv, int max)
{
    char path[4096];
    FILE *f;
    size_t n;
    int argc = 0;
    snprintf(path, sizeof path, "%s/tests/fixtures/%s/args.txt", srcdir(), fixture);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *tok = strtok(buf, " \t\r\n"); tok && argc < max; tok = strtok(NULL, " \t\r\n"))
        argv[argc++] = tok;
    return argc;
}

/* Run argv[0] with argv; stdout and stderr go to log. Returns the exit
 * status, or 128 + signal. */
static int run(char **argv, const char *log)
{
    pid_t pid;
    int status;
    fflush(stdout);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *out = freopen(log, "w", stdout);
        if (!out || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        execv(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void print_file(const char *path)
{
    char line[512];
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

/* Runs one fixture; prefix (may be NULL) is a wrapper such as oclgrind. */
static int check_fixture(const char *fixture, const char *gemm, char **prefix, const char *tag)
{
    char buf[2048], exe[4096], w[4096], b[4096], e[4096], log[4096], gflag[64];
    char *argv[MAX_ARGS + 16];
    int argc = 0, rc;
    for (; prefix && *prefix; prefix++)
        argv[argc++] = *prefix;
    snprintf(exe, sizeof exe, "%s/cae-cl-step", builddir());
    argv[argc++] = exe;
    argc += read_args(fixture, buf, sizeof buf, argv + argc, MAX_ARGS);
    snprintf(w, sizeof w, "--weights=%s/tests/fixtures/%s/weights.safetensors", srcdir(), fixture);
    snprintf(b, sizeof b, "--batch=%s/tests/fixtures/%s/batch.safetensors", srcdir(), fixture);
    snprintf(e, sizeof e, "--check=%s/tests/fixtures/%s/expected.safetensors", srcdir(), fixture);
    snprintf(gflag, sizeof gflag, "--gemm=%s", gemm);
    argv[argc++] = w;
    argv[argc++] = b;
    argv[argc++] = e;
    argv[argc++] = gflag;
    argv[argc] = NULL;
    snprintf(log, sizeof log, "%s/tests/conformance-%s-%s-%s.out", builddir(), fixture, gemm, tag);
    rc = run(argv, log);
    if (rc != 0)
        print_file(log);
    return rc;
}

static const char *fixtures[] = {"tiny", "ls01", "proj", "odd", "pixel", "pixnorm", "noalign"};

/* Runs cae-cl-step on fixture files with extra flags; returns the status. */
static int step_with(const char *args_fixture, const char *files_fixture, char **extra,
                     const char *log)
{
    char buf[2048], exe[4096], w[4096], b[4096];
    char *argv[MAX_ARGS + 16];
    int argc = 0;
    snprintf(exe, sizeof exe, "%s/cae-cl-step", builddir());
    argv[argc++] = exe;
    argc += read_args(args_fixture, buf, sizeof buf, argv + argc, MAX_ARGS);
    snprintf(w, sizeof w, "--weights=%s/tests/fixtures/%s/weights.safetensors", srcdir(),
             files_fixture);
    snprintf(b, sizeof b, "--batch=%s/tests/fixtures/%s/batch.safetensors", srcdir(), files_fixture);
    argv[argc++] = w;
    argv[argc++] = b;
    for (; extra && *extra; extra++)
        argv[argc++] = *extra;
    argv[argc] = NULL;
    return run(argv, log);
}

static int file_contains(const char *path, const char *text)
{
    char line[1024];
    int found = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int ca, cb, same = fa && fb;
    while (same) {
        ca = fgetc(fa);
        cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* Drop path: the same seed gives the same step, and it really drops. */
START_TEST(test_drop_path_deterministic)
{
    char o1[4096], o2[4096], e[4096], log[4096];
    char *a1[] = {"--drop_path=0.5", "--seed=7", o1, NULL};
    char *a2[] = {"--drop_path=0.5", "--seed=7", o2, e, NULL};
    snprintf(o1, sizeof o1, "--out=%s/tests/drop1.safetensors", builddir());
    snprintf(o2, sizeof o2, "--out=%s/tests/drop2.safetensors", builddir());
    snprintf(e, sizeof e, "--check=%s/tests/fixtures/ls01/expected.safetensors", srcdir());
    snprintf(log, sizeof log, "%s/tests/drop.out", builddir());
    ck_assert_int_eq(step_with("ls01", "ls01", a1, log), 0);
    /* differs from the reference without drop path: --check fails */
    ck_assert_int_eq(step_with("ls01", "ls01", a2, log), 1);
    ck_assert(same_file(o1 + 6, o2 + 6));
}
END_TEST

/* Inputs that do not fit the model are refused with the tensor named. */
START_TEST(test_bad_inputs_refused)
{
    char log[4096];
    snprintf(log, sizeof log, "%s/tests/bad-input.out", builddir());
    /* weights of another model size */
    ck_assert_int_eq(step_with("ls01", "tiny", NULL, log), 1);
    ck_assert(file_contains(log, "encoder.cls_token") || file_contains(log, "tensor '"));
    /* a batch with another mask count */
    {
        char *more[] = {"--num_mask_patches=5", NULL};
        ck_assert_int_eq(step_with("ls01", "ls01", more, log), 1);
        ck_assert(file_contains(log, "tensor 'labels'"));
    }
    /* unknown flags and bad values name the flag */
    {
        char *more[] = {"--no_such_flag", NULL};
        ck_assert_int_eq(step_with("ls01", "ls01", more, log), 2);
        ck_assert(file_contains(log, "--no_such_flag"));
    }
    {
        char *more[] = {"--gemm=fast", NULL};
        ck_assert_int_eq(step_with("ls01", "ls01", more, log), 2);
        ck_assert(file_contains(log, "--gemm fast"));
    }
}
END_TEST

/* The device cae-cl-step will run on, chosen and queried once (no OpenCL
 * context): what its defaults take, and whether it runs native kernels. */
static const cae_ctx *device(void)
{
    static cae_ctx ctx;
    static int have;
    if (!have) {
        ck_assert_msg(cae_device_open(&ctx, 0) == 0, "no OpenCL device");
        have = 1;
    }
    return &ctx;
}

/* The device's own path: --gemm auto, the default kernel shapes. */
START_TEST(test_fixture_auto)
{
    ck_assert_msg(check_fixture(fixtures[_i], "auto", NULL, "plain") == 0,
                  "fixture %s with --gemm auto", fixtures[_i]);
}
END_TEST

/* The back end --gemm auto does not pick: CLBlast where auto takes the host
 * BLAS; the host BLAS where auto takes CLBlast, only on a device that runs
 * native kernels (not a GPU, not under CAE_CL_NATIVE_KERNELS=0). */
START_TEST(test_fixture_other_gemm)
{
    const cae_ctx *d = device();
    int host = cae_gemm_resolve(d, CAE_GEMM_AUTO) == CAE_GEMM_CLBLAST;
    if (host && !d->native_kernels) {
        printf("fixture %s: --gemm host skipped: %s runs no native kernels\n", fixtures[_i],
               d->device_name);
        return;
    }
    ck_assert_msg(check_fixture(fixtures[_i], host ? "host" : "clblast", NULL, "plain") == 0,
                  "fixture %s with --gemm %s", fixtures[_i], host ? "host" : "clblast");
}
END_TEST

/* The GPU kernel shapes (fused attention core, a work-group per LayerNorm
 * and cross-entropy row), or the CPU ones (GEMM core, a row per work-item) */
static void gpu_shapes(int on)
{
    if (on) {
        setenv("CAE_CL_ATTENTION", "fused", 1);
        setenv("CAE_CL_ROW_KERNELS", "group", 1);
    } else {
        setenv("CAE_CL_ATTENTION", "gemm", 1);
        setenv("CAE_CL_ROW_KERNELS", "item", 1);
    }
}

static void default_shapes(void)
{
    unsetenv("CAE_CL_ATTENTION");
    unsetenv("CAE_CL_ROW_KERNELS");
}

/* The kernel shapes the device's defaults do not take, on --gemm auto: so
 * both attention cores and both row-kernel shapes run every fixture. */
START_TEST(test_fixture_other_shapes)
{
    int gpu = device()->cpu_defaults;
    gpu_shapes(gpu);
    ck_assert_msg(check_fixture(fixtures[_i], "auto", NULL, gpu ? "gpu-shapes" : "cpu-shapes") == 0,
                  "fixture %s with the %s kernel shapes", fixtures[_i], gpu ? "GPU" : "CPU");
    default_shapes();
}
END_TEST

/* Arenas and activations split into buffers of at most 64 KiB. */
START_TEST(test_split_arena)
{
    setenv("CAE_CL_MAX_CHUNK_BYTES", "65536", 1);
    ck_assert_msg(check_fixture("proj", "auto", NULL, "split") == 0, "split arena");
    unsetenv("CAE_CL_MAX_CHUNK_BYTES");
}
END_TEST

/* Every kernel of a full step under oclgrind: out-of-bounds accesses, data
 * races and uninitialized reads are reported to the log; any report fails. */
/* _i = 0: the CPU kernel shapes; 1: the GPU ones (fused attention core,
 * work-group rows: barriers and local memory checked too) */
START_TEST(test_oclgrind_step)
{
    const char *oclgrind = getenv("OCLGRIND");
    char log[4096];
    /* oclgrind 21.10's uninitialized-value checker crashes on vector
     * loads, so the LayerNorm kernels are built with their scalar loops */
    char *prefix[] = {(char *)oclgrind, "--data-races", "--uninitialized", "--check-api",
                      "--build-options", "-DLAYERNORM_VEC=0 -DGELU_VEC=0", "--log", log, NULL};
    struct stat st;
    if (!oclgrind || !*oclgrind) {
        fprintf(stderr, "oclgrind not installed: kernel checking skipped\n");
        return;
    }
    snprintf(log, sizeof log, "%s/tests/oclgrind-tiny%d.log", builddir(), _i);
    unlink(log);
    setenv("CAE_CL_NO_CACHE", "1", 1);
    gpu_shapes(_i);
    ck_assert_msg(check_fixture("tiny", "clblast", prefix, _i ? "oclgrind-gpu" : "oclgrind") == 0,
                  "tiny under oclgrind (%s kernel shapes)", _i ? "GPU" : "CPU");
    default_shapes();
    unsetenv("CAE_CL_NO_CACHE");
    if (stat(log, &st) == 0 && st.st_size > 0) {
        print_file(log);
        ck_abort_msg("oclgrind reported errors (see %s)", log);
    }
}
END_TEST

static Suite *conformance_suite(void)
{
    Suite *s = suite_create("conformance");
    TCase *tc = tu_tcase(s, "fixtures", 1800);
    int n = (int)(sizeof fixtures / sizeof fixtures[0]);
    tcase_add_loop_test(tc, test_fixture_auto, 0, n);
    tcase_add_loop_test(tc, test_fixture_other_gemm, 0, n);
    tcase_add_loop_test(tc, test_fixture_other_shapes, 0, n);
    TU_ADD_TESTS(tc, test_split_arena, test_drop_path_deterministic, test_bad_inputs_refused);
    /* its own case, so that CK_RUN_CASE=fixtures leaves it out */
    tc = tu_tcase(s, "oclgrind", 1800);
    tcase_add_loop_test(tc, test_oclgrind_step, 0, 2);
    return s;
}

TU_MAIN(conformance_suite)

/* test_conformance.c: cae-cl-step against the PyTorch fixtures.
 *
 * For every fixture in tests/fixtures (written by tools/reference), runs
 *   cae-cl-step $(cat args.txt) --weights .. --batch .. --check expected
 * with each GEMM back end and requires exit 0 (every tensor within relative
 * L2 1e-4). Also: one run with the arenas split into small buffers, and the
 * smallest fixture under oclgrind, where any report fails the test.
 */
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
    snprintf(exe, sizeof exe, "%s/tools/cae-cl-step", builddir());
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

static const char *fixtures[] = {"tiny", "ls01", "proj", "odd"};

START_TEST(test_fixture_host)
{
    ck_assert_msg(check_fixture(fixtures[_i], "host", NULL, "plain") == 0,
                  "fixture %s with the host BLAS", fixtures[_i]);
}
END_TEST

START_TEST(test_fixture_clblast)
{
    ck_assert_msg(check_fixture(fixtures[_i], "clblast", NULL, "plain") == 0,
                  "fixture %s with CLBlast", fixtures[_i]);
}
END_TEST

/* Arenas and activations split into buffers of at most 64 KiB. */
START_TEST(test_split_arena)
{
    setenv("CAE_CL_MAX_CHUNK_BYTES", "65536", 1);
    ck_assert_msg(check_fixture("proj", "host", NULL, "split") == 0, "split arena");
    unsetenv("CAE_CL_MAX_CHUNK_BYTES");
}
END_TEST

/* Every kernel of a full step under oclgrind: out-of-bounds accesses, data
 * races and uninitialized reads are reported to the log; any report fails. */
START_TEST(test_oclgrind_step)
{
    const char *oclgrind = getenv("OCLGRIND");
    char log[4096];
    /* oclgrind 21.10's uninitialized-value checker crashes on vector
     * loads, so the LayerNorm kernels are built with their scalar loops */
    char *prefix[] = {(char *)oclgrind, "--data-races", "--uninitialized", "--check-api",
                      "--build-options", "-DLAYERNORM_VEC=0", "--log", log, NULL};
    struct stat st;
    if (!oclgrind || !*oclgrind) {
        fprintf(stderr, "oclgrind not installed: kernel checking skipped\n");
        return;
    }
    snprintf(log, sizeof log, "%s/tests/oclgrind-tiny.log", builddir());
    unlink(log);
    setenv("CAE_CL_NO_CACHE", "1", 1);
    ck_assert_msg(check_fixture("tiny", "clblast", prefix, "oclgrind") == 0, "tiny under oclgrind");
    unsetenv("CAE_CL_NO_CACHE");
    if (stat(log, &st) == 0 && st.st_size > 0) {
        print_file(log);
        ck_abort_msg("oclgrind reported errors (see %s)", log);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conformance");
    TCase *tc = tcase_create("fixtures");
    SRunner *sr;
    int failed, n = (int)(sizeof fixtures / sizeof fixtures[0]);
    tcase_set_timeout(tc, 1800);
    tcase_add_loop_test(tc, test_fixture_host, 0, n);
    tcase_add_loop_test(tc, test_fixture_clblast, 0, n);
    tcase_add_test(tc, test_split_arena);
    tcase_add_test(tc, test_oclgrind_step);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

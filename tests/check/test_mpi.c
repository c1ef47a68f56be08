/* test_mpi.c: data-parallel training equals single-rank training.
 *
 * Runs cae-cl-train through mpirun with N ranks of per-rank batch b, and
 * alone with batch N*b on the same samples (the sampler gives rank r the
 * positions r, r+N, ... of each global batch, which together are exactly
 * the single rank's batch). After 3 steps the parameters and both AdamW
 * moments must agree per tensor to relative L2 1e-5, and the logged losses
 * to 1e-5. N = 2, and N = 3 with small buckets that cut tensors unevenly.
 */
#include "safetensors/safetensors.h"

#include "tests/common/hostutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *builddir(void)
{
    const char *s = getenv("CAE_TOP_BUILDDIR");
    return s && *s ? s : ".";
}

static char workdir[] = "/tmp/cae-mpi-XXXXXX";

/* a tiny model on Fashion-MNIST; no warmup, so 3 steps move the weights */
static const char *common[] = {
    "--input_size", "16", "--patch_size", "4", "--embed_dim", "32", "--depth", "2",
    "--num_heads", "2", "--decoder_embed_dim", "24", "--regressor_depth", "1",
    "--decoder_depth", "1", "--decoder_num_heads", "2", "--num_mask_patches", "8",
    "--min_mask_patches_per_block", "2", "--epochs", "1", "--num_workers", "1", "--seed", "5",
    "--warmup_steps", "0", "--lr", "2e-3", "--drop_path", "0", "--stop_after_steps", "3",
    "--no_auto_resume", NULL};

static int run(int ranks, int batch, const char *bucket_mb, const char *out)
{
    char exe[4096], bflag[32], nflag[16], log[4200];
    char *argv[96];
    int argc = 0, status;
    pid_t pid;
    snprintf(exe, sizeof exe, "%s/cae-cl-train", builddir());
    snprintf(bflag, sizeof bflag, "%d", batch);
    snprintf(nflag, sizeof nflag, "%d", ranks);
    if (ranks > 1) {
        argv[argc++] = "mpirun";
        argv[argc++] = "--allow-run-as-root";
        argv[argc++] = "--oversubscribe";
        argv[argc++] = "-np";
        argv[argc++] = nflag;
    }
    argv[argc++] = exe;
    for (int i = 0; common[i]; i++)
        argv[argc++] = (char *)common[i];
    argv[argc++] = "--batch_size";
    argv[argc++] = bflag;
    argv[argc++] = "--bucket_cap_mb";
    argv[argc++] = (char *)bucket_mb;
    argv[argc++] = "--output_dir";
    argv[argc++] = (char *)out;
    argv[argc] = NULL;
    snprintf(log, sizeof log, "%s.log", out);
    fflush(stdout);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen(log, "w", stdout) || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char line[512];
        FILE *f = fopen(log, "r");
        while (f && fgets(line, sizeof line, f))
            fputs(line, stderr);
        if (f)
            fclose(f);
        return -1;
    }
    return 0;
}

static double norm2(const cae_st_tensor *t)
{
    double n = 0;
    for (size_t i = 0; i < t->numel; i++) {
        float x;
        memcpy(&x, (const char *)t->data + 4 * i, 4);
        n += (double)x * x;
    }
    return n;
}

/* The scale a tensor's difference is judged on. Two cases are judged on
 * the scale of the same module's weight instead of their own:
 * - the regressor's norm1_k.bias gradient is analytically zero (a shared
 *   shift of all keys cancels in the softmax), so its moments hold rounding
 *   noise;
 * - biases start at zero, and AdamW's m / sqrt(v) amplifies the last-digit
 *   differences of summing the batch in another order wherever a bias's
 *   gradients nearly cancel over the steps (measured: 6e-5 of a bias of
 *   size 6e-3 after 3 steps, with its moments equal to 1e-7).
 * The moments of every other tensor, which are functions of the averaged
 * gradients alone, are held to their own scale. */
static double reference_norm2(const cae_st_file *f, const cae_st_tensor *t)
{
    size_t len = strlen(t->name);
    int moment = strncmp(t->name, "optimizer.", 10) == 0;
    double own = norm2(t);
    int is_bias = len > 5 && strcmp(t->name + len - 5, ".bias") == 0;
    int is_norm1_k_bias = len > 12 && strcmp(t->name + len - 12, "norm1_k.bias") == 0;
    if ((!moment && is_bias) || is_norm1_k_bias) {
        char wname[512];
        const cae_st_tensor *w;
        snprintf(wname, sizeof wname, "%.*sweight", (int)(len - 4), t->name);
        w = cae_st_find(f, wname);
        if (w && norm2(w) > own)
            return norm2(w);
    }
    return own;
}

static double rel_l2(const cae_st_file *fb, const cae_st_tensor *a, const cae_st_tensor *b)
{
    double d = 0, n = reference_norm2(fb, b);
    for (size_t i = 0; i < a->numel; i++) {
        float x, y;
        memcpy(&x, (const char *)a->data + 4 * i, 4);
        memcpy(&y, (const char *)b->data + 4 * i, 4);
        d += ((double)x - y) * ((double)x - y);
    }
    return n > 0 ? sqrt(d / n) : sqrt(d);
}

static void compare_checkpoints(const char *multi, const char *single)
{
    char pa[4200], pb[4200];
    cae_st_file a, b;
    double worst = 0, all_diff = 0, all_norm = 0;
    const char *worst_name = "";
    snprintf(pa, sizeof pa, "%s/checkpoint-0.safetensors", multi);
    snprintf(pb, sizeof pb, "%s/checkpoint-0.safetensors", single);
    ck_assert_int_eq(cae_st_read(&a, pa), 0);
    ck_assert_int_eq(cae_st_read(&b, pb), 0);
    ck_assert_uint_eq(a.n_tensors, b.n_tensors);
    ck_assert_str_eq(cae_st_meta(&a, "step"), "3");
    for (size_t i = 0; i < a.n_tensors; i++) {
        const cae_st_tensor *x = &a.tensors[i];
        const cae_st_tensor *y = cae_st_find(&b, x->name);
        double e;
        ck_assert_msg(y != NULL, "%s missing", x->name);
        ck_assert_uint_eq(x->numel, y->numel);
        /* the whole model as one vector (but for the noise-driven
         * norm1_k.bias parameters, see below) */
        if (strncmp(x->name, "optimizer.", 10) != 0 && !strstr(x->name, "norm1_k.bias")) {
            for (size_t k = 0; k < x->numel; k++) {
                float u, v;
                memcpy(&u, (const char *)x->data + 4 * k, 4);
                memcpy(&v, (const char *)y->data + 4 * k, 4);
                all_diff += ((double)u - v) * ((double)u - v);
                all_norm += (double)v * v;
            }
        }
        /* The norm1_k.bias parameters themselves are not compared: with an
         * analytically zero gradient, AdamW turns rounding noise into steps
         * of size lr with arbitrary signs (their moments are compared). */
        if (strncmp(x->name, "optimizer.", 10) != 0 && strstr(x->name, "norm1_k.bias"))
            continue;
        e = rel_l2(&b, x, y);
        if (!(e <= worst)) {
            worst = e;
            worst_name = x->name;
        }
    }
    fprintf(stderr, "%s vs %s: whole model relative L2 %.3g; worst tensor %.3g (%s)\n", multi, single,
            sqrt(all_diff / all_norm), worst, worst_name);
    ck_assert_msg(sqrt(all_diff / all_norm) <= 1e-5, "the parameters differ: relative L2 %.3g",
                  sqrt(all_diff / all_norm));
    ck_assert_msg(worst <= 1e-5, "%s differs from the single-rank run: relative L2 %.3g", worst_name,
                  worst);
    cae_st_free(&a);
    cae_st_free(&b);
}

/* the logged losses, step by step */
static void compare_losses(const char *multi, const char *single)
{
    char pa[4200], pb[4200], la[2048], lb[2048];
    FILE *fa, *fb;
    int steps = 0;
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", multi);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", single);
    fa = fopen(pa, "r");
    fb = fopen(pb, "r");
    ck_assert(fa && fb);
    while (fgets(la, sizeof la, fa) && fgets(lb, sizeof lb, fb)) {
        const char *ka = strstr(la, "\"loss\": "), *kb = strstr(lb, "\"loss\": ");
        double x, y;
        ck_assert(ka && kb);
        x = atof(ka + 8);
        y = atof(kb + 8);
        ck_assert_msg(fabs(x - y) <= 1e-5 * fabs(y), "step %d: loss %.9g vs %.9g", steps, x, y);
        steps++;
    }
    fclose(fa);
    fclose(fb);
    ck_assert_int_eq(steps, 3);
}

static void equivalence(int ranks, int b, const char *bucket_mb)
{
    char multi[256], single[256];
    snprintf(multi, sizeof multi, "%s/np%d", workdir, ranks);
    snprintf(single, sizeof single, "%s/np1-b%d", workdir, ranks * b);
    ck_assert_msg(run(ranks, b, bucket_mb, multi) == 0, "mpirun -np %d failed", ranks);
    ck_assert_msg(run(1, ranks * b, bucket_mb, single) == 0, "single-rank run failed");
    compare_checkpoints(multi, single);
    compare_losses(multi, single);
}

static int have_prerequisites(void)
{
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "Fashion-MNIST not installed: skipped\n");
        return 0;
    }
    if (system("mpirun --version > /dev/null 2>&1") != 0) {
        fprintf(stderr, "mpirun not found: skipped\n");
        return 0;
    }
    return 1;
}

START_TEST(test_two_ranks)
{
    if (have_prerequisites())
        equivalence(2, 4, "25");
}
END_TEST

START_TEST(test_three_ranks_uneven_buckets)
{
    if (have_prerequisites())
        equivalence(3, 3, "0.004"); /* about 4 KiB: buckets cut across tensors */
}
END_TEST

static Suite *mpi_suite(void)
{
    Suite *s = suite_create("mpi");
    TCase *tc = tu_tcase(s, "equivalence", 600);
    TU_ADD_TESTS(tc, test_two_ranks, test_three_ranks_uneven_buckets);
    return s;
}

int main(void)
{
    int failed;
    if (!mkdtemp(workdir)) {
        perror("mkdtemp");
        return 99;
    }
    failed = tu_run(mpi_suite());
    if (!failed) { /* keep the runs of a failure for inspection */
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", workdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", workdir);
    }
    return failed ? 1 : 0;
}

/* program.c: the one program built from every file in cl/: its build
 * options (the limits of kernels.h and the tuned -D defines), its build (or
 * its binary from the on-disk cache, keyed by sources, options, device and
 * driver) and its kernels, all created at once (kernels.h). */
#include "runtime/program.h"

#include "runtime/cl_sources.h"
#include "runtime/files.h"
#include "runtime/kernel_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* No fast-math: training must see NaN and Inf. The limits host and
 * kernels share come next, then the tuned defines (cae_program_tune). */
static const char base_build_options[] = "-cl-std=CL1.2" CAE_KERNEL_LIMIT_OPTIONS;

/* CAE_KERNELS' names, by id */
static const char *const kernel_names[CAE_KERNEL_COUNT] = {
#define CAE_KERNEL_NAME(name) #name,
    CAE_KERNELS(CAE_KERNEL_NAME)
#undef CAE_KERNEL_NAME
};

static void print_build_log(cae_ctx *ctx, cl_program program)
{
    size_t size = 0;
    char *log;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) != CL_SUCCESS)
        return;
    log = malloc(size + 1);
    if (!log)
        return;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log, NULL) == CL_SUCCESS) {
        log[size] = '\0';
        fprintf(stderr, "cae-cl: OpenCL build log for %s:\n%s\n", ctx->device_name, log);
    }
    free(log);
}

/* Read cl/<file> from CAE_CL_KERNEL_DIR (development: edit kernels without
 * rebuilding). The #line directive still names cl/<file>. */
static char *load_kernel_file(const char *dir, const char *path)
{
    char full[4096];
    const char *base = strrchr(path, '/');
    struct stat st;
    char why[256];
    FILE *f;
    long len;
    char *text;
    int head;

    snprintf(full, sizeof full, "%s/%s", dir, base ? base + 1 : path);
    f = cae_fopen_regular(full, &st, why, sizeof why);
    if (!f) {
        cae_errorf("CAE_CL_KERNEL_DIR: %s: %s", full, why);
        return NULL;
    }
    len = (long)st.st_size;
    text = malloc((size_t)len + strlen(path) + 32);
    if (!text) {
        fclose(f);
        return NULL;
    }
    head = sprintf(text, "#line 1 \"%s\"\n", path);
    if (fread(text + head, 1, (size_t)len, f) != (size_t)len) {
        cae_errorf("%s: short read", full);
        free(text);
        fclose(f);
        return NULL;
    }
    text[head + len] = '\0';
    fclose(f);
    return text;
}

static int try_cached_binary(cae_ctx *ctx, const cae_kernel_cache *kc)
{
    size_t size = 0;
    unsigned char *bin = cae_kernel_cache_load(kc, &size);
    const unsigned char *bins[1];
    cl_int status = CL_SUCCESS, err;
    cl_program prog;

    if (!bin)
        return -1;
    bins[0] = bin;
    prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &size, bins, &status, &err);
    free(bin);
    if (err != CL_SUCCESS || status != CL_SUCCESS)
        return -1;
    if (clBuildProgram(prog, 1, &ctx->device, ctx->build_options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return -1; /* stale or foreign binary: rebuild from source */
    }
    ctx->program = prog;
    return 0;
}

static int build_program(cae_ctx *ctx)
{
    const char *dir = getenv("CAE_CL_KERNEL_DIR");
    const char **texts = calloc(cae_cl_n_sources, sizeof *texts);
    cae_kernel_cache kc;
    cl_int err;
    int rc = -1;

    if (!texts)
        return -1;
    for (size_t i = 0; i < cae_cl_n_sources; i++) {
        texts[i] = (dir && *dir) ? load_kernel_file(dir, cae_cl_sources[i].path)
                                 : cae_cl_sources[i].text;
        if (!texts[i])
            goto out;
    }
    cae_kernel_cache_open(&kc, ctx->device, ctx->platform, texts, cae_cl_n_sources, ctx->build_options);
    if (try_cached_binary(ctx, &kc) == 0) {
        rc = 0;
        goto out;
    }
    ctx->program = clCreateProgramWithSource(ctx->context, (cl_uint)cae_cl_n_sources, texts, NULL, &err);
    if (err != CL_SUCCESS) {
        cae_cl_error("clCreateProgramWithSource", err, __FILE__, __LINE__);
        goto out;
    }
    err = clBuildProgram(ctx->program, 1, &ctx->device, ctx->build_options, NULL, NULL);
    if (err != CL_SUCCESS) {
        cae_cl_error("clBuildProgram(cl/*.cl)", err, __FILE__, __LINE__);
        print_build_log(ctx, ctx->program);
        goto out;
    }
    cae_kernel_cache_store(&kc, ctx->program);
    rc = 0;
out:
    if (dir && *dir)
        for (size_t i = 0; i < cae_cl_n_sources; i++)
            free((char *)texts[i]);
    free(texts);
    return rc;
}

/* Every kernel kernels.h lists, once the program holds exactly those. */
static int create_kernels(cae_ctx *ctx)
{
    size_t n = 0;
    cl_int err;
    CL_CHECK(clGetProgramInfo(ctx->program, CL_PROGRAM_NUM_KERNELS, sizeof n, &n, NULL));
    if (n != CAE_KERNEL_COUNT) {
        cae_errorf("cl/ holds %zu kernels but src/runtime/kernels.h lists %d: list each once",
                   n, (int)CAE_KERNEL_COUNT);
        return -1;
    }
    for (size_t i = 0; i < CAE_KERNEL_COUNT; i++) {
        ctx->kernel[i] = clCreateKernel(ctx->program, kernel_names[i], &err);
        if (err != CL_SUCCESS) {
            ctx->kernel[i] = NULL;
            cae_errorf("clCreateKernel(\"%s\") failed: %s", kernel_names[i], cae_cl_error_name(err));
            return -1;
        }
        CL_CHECK(clGetKernelWorkGroupInfo(ctx->kernel[i], ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof ctx->kernel_wg[i], &ctx->kernel_wg[i], NULL));
    }
    return 0;
}

int cae_program_build(cae_ctx *ctx)
{
    CAE_TRY(build_program(ctx));
    return create_kernels(ctx);
}

/* The tuned parameters: imposed when given, else the device's tuning file
 * (a refused file has warned and counts as none). Sets the build options and
 * the 1-D work-group size; CLBlast's share is applied by cae_gemm_init. */
void cae_program_tune(cae_ctx *ctx, const cae_tune *imposed)
{
    static int said;
    cae_tune_device dev;

    ctx->tune_file[0] = '\0';
    memset(&ctx->tune, 0, sizeof ctx->tune);
    if (imposed) {
        ctx->tune = *imposed;
    } else if (cae_tune_device_query(ctx->device, ctx->platform, &dev) == 0 &&
               cae_tune_path(&dev, ctx->tune_file, sizeof ctx->tune_file) == 0) {
        if (cae_tune_load(ctx->tune_file, &dev, &ctx->tune) != 1)
            ctx->tune_file[0] = '\0';
        else if (!said++)
            fprintf(stderr, "cae-cl: tuned parameters from %s\n", ctx->tune_file);
    }
    ctx->launch_wg = ctx->tune.have_wg ? ctx->tune.work_group_1d : 64;
    snprintf(ctx->build_options, sizeof ctx->build_options, "%s", base_build_options);
    cae_tune_defines_options(&ctx->tune, ctx->build_options, sizeof ctx->build_options);
}

void cae_program_free(cae_ctx *ctx)
{
    for (size_t i = 0; i < CAE_KERNEL_COUNT; i++)
        if (ctx->kernel[i])
            clReleaseKernel(ctx->kernel[i]);
    memset(ctx->kernel, 0, sizeof ctx->kernel);
    if (ctx->program)
        clReleaseProgram(ctx->program);
    ctx->program = NULL;
}

cl_kernel cae_kernel(cae_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < CAE_KERNEL_COUNT; i++)
        if (strcmp(kernel_names[i], name) == 0)
            return ctx->kernel[i];
    cae_errorf("no kernel named %s in src/runtime/kernels.h", name);
    return NULL;
}

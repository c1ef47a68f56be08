/* runtime.c: device choice, context, program build, kernels and launches. */
#include "runtime/runtime.h"

#include "runtime/cl_sources.h"
#include "runtime/gemm.h"
#include "runtime/kernel_cache.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* No fast-math: training must see NaN and Inf. */
static const char base_build_options[] = "-cl-std=CL1.2";

int cae_gemm_choice_parse(const char *text, cae_gemm_choice *out)
{
    if (strcmp(text, "auto") == 0)
        *out = CAE_GEMM_AUTO;
    else if (strcmp(text, "clblast") == 0)
        *out = CAE_GEMM_CLBLAST;
    else if (strcmp(text, "host") == 0)
        *out = CAE_GEMM_HOST;
    else
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- devices */

static int get_platforms(cl_platform_id **out, cl_uint *n)
{
    cl_int err = clGetPlatformIDs(0, NULL, n);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && *n == 0)) {
        cae_errorf("no OpenCL platform found: install an OpenCL driver (for the CPU: "
                   "apt-get install pocl-opencl-icd) and check /etc/OpenCL/vendors");
        return -1;
    }
    CL_CHECK(err);
    *out = calloc(*n, sizeof **out);
    if (!*out) {
        cae_errorf("out of host memory listing platforms");
        return -1;
    }
    CL_CHECK(clGetPlatformIDs(*n, *out, NULL));
    return 0;
}

static int get_devices(cl_platform_id p, cl_device_id **out, cl_uint *n)
{
    cl_int err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, NULL, n);
    if (err == CL_DEVICE_NOT_FOUND) {
        *n = 0;
        *out = NULL;
        return 0;
    }
    CL_CHECK(err);
    *out = calloc(*n ? *n : 1, sizeof **out);
    if (!*out) {
        cae_errorf("out of host memory listing devices");
        return -1;
    }
    CL_CHECK(clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, *n, *out, NULL));
    return 0;
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* "3" selects index 3; anything else is a name substring. */
static int parse_index(const char *s, long *out)
{
    char *end;
    if (!*s)
        return -1;
    errno = 0;
    *out = strtol(s, &end, 10);
    return (*end == '\0' && errno == 0 && *out >= 0) ? 0 : -1;
}

static int matches(const char *selector, const char *name, long i)
{
    long want;
    if (!selector || !*selector)
        return 1;
    if (parse_index(selector, &want) == 0)
        return want == i;
    return contains_nocase(name, selector);
}

int cae_list_devices(FILE *out)
{
    cl_platform_id *plats = NULL;
    cl_uint np = 0;
    CAE_TRY(get_platforms(&plats, &np));
    for (cl_uint p = 0; p < np; p++) {
        char pname[256] = "";
        cl_device_id *devs = NULL;
        cl_uint nd = 0;
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
        fprintf(out, "platform %u: %s\n", p, pname);
        if (get_devices(plats[p], &devs, &nd) != 0) {
            free(plats);
            return -1;
        }
        for (cl_uint d = 0; d < nd; d++) {
            char dname[256] = "", ver[256] = "";
            cl_device_type type = 0;
            cl_ulong mem = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname - 1, dname, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_VERSION, sizeof ver - 1, ver, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            fprintf(out, "  device %u: %s [%s, %s, %.1f GiB]\n", d, dname,
                    (type & CL_DEVICE_TYPE_GPU) ? "GPU" : (type & CL_DEVICE_TYPE_CPU) ? "CPU" : "other",
                    ver, (double)mem / (1024.0 * 1024.0 * 1024.0));
        }
        free(devs);
    }
    free(plats);
    fprintf(out, "select with CAE_CL_PLATFORM and CAE_CL_DEVICE (an index or part of the name)\n");
    return 0;
}

/* Choose per CAE_CL_PLATFORM / CAE_CL_DEVICE; by default the GPUs (else
 * every device) of the matching platforms, and of those number slot modulo
 * their count (slot 0: the first GPU, else the first device). */
static int choose_device(cae_ctx *ctx, int slot)
{
    const char *psel = getenv("CAE_CL_PLATFORM");
    const char *dsel = getenv("CAE_CL_DEVICE");
    int explicit_device = dsel && *dsel;
    cl_platform_id *plats = NULL;
    cl_uint np = 0;
    int found = 0;

    CAE_TRY(get_platforms(&plats, &np));
    /* pass 0: GPUs only (the default choice); pass 1: any device */
    for (int pass = explicit_device ? 1 : 0; pass < 2 && !found; pass++) {
        long count = 0, want;
        /* count the candidates first, so the slot wraps around them */
        for (int counting = 1; counting >= 0 && !found; counting--) {
            long seen = 0;
            want = (counting || count == 0) ? -1 : (explicit_device ? 0 : slot % count);
            for (cl_uint p = 0; p < np && !found; p++) {
                char pname[256] = "";
                cl_device_id *devs = NULL;
                cl_uint nd = 0;
                clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
                if (!matches(psel, pname, (long)p))
                    continue;
                if (get_devices(plats[p], &devs, &nd) != 0) {
                    free(plats);
                    return -1;
                }
                for (cl_uint d = 0; d < nd && !found; d++) {
                    char dname[256] = "";
                    cl_device_type type = 0;
                    clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname - 1, dname, NULL);
                    clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
                    if (!matches(dsel, dname, (long)d))
                        continue;
                    if (pass == 0 && !(type & CL_DEVICE_TYPE_GPU))
                        continue;
                    if (!counting && seen == want) {
                        ctx->platform = plats[p];
                        ctx->device = devs[d];
                        found = 1;
                    }
                    seen++;
                }
                free(devs);
            }
            if (counting)
                count = seen;
        }
    }
    free(plats);
    if (!found) {
        cae_errorf("no OpenCL device matches CAE_CL_PLATFORM='%s' CAE_CL_DEVICE='%s' "
                   "(run with --list-devices to see them)",
                   psel ? psel : "", dsel ? dsel : "");
        return -1;
    }
    return 0;
}

/* The attention core: GEMMs on CPUs (there the host BLAS beats a
 * row-per-work-item kernel), the fused kernel elsewhere (it never writes the
 * [B,H,Nq,Nk] probabilities); CAE_CL_ATTENTION=fused|gemm overrides. */
static int choose_attention(cae_ctx *ctx)
{
    const char *sel = getenv("CAE_CL_ATTENTION");
    if (!sel || !*sel) {
        ctx->attention_fused = !ctx->is_cpu;
        return 0;
    }
    if (strcmp(sel, "fused") == 0 || strcmp(sel, "gemm") == 0) {
        ctx->attention_fused = strcmp(sel, "fused") == 0;
        return 0;
    }
    cae_errorf("CAE_CL_ATTENTION='%s': expected 'fused' or 'gemm'", sel);
    return -1;
}

/* Row kernels: one row per work-item on CPUs (a row loop with vector loads;
 * PoCL runs work-group reductions ten times slower), one row per work-group
 * elsewhere (coalesced reads, tree sums). CAE_CL_ROW_KERNELS=item|group
 * overrides. */
static int choose_row_kernels(cae_ctx *ctx)
{
    const char *sel = getenv("CAE_CL_ROW_KERNELS");
    int group = !ctx->is_cpu;
    if (sel && *sel) {
        if (strcmp(sel, "item") != 0 && strcmp(sel, "group") != 0) {
            cae_errorf("CAE_CL_ROW_KERNELS='%s': expected 'item' or 'group'", sel);
            return -1;
        }
        group = strcmp(sel, "group") == 0;
    }
    ctx->row_group = group ? 256 : 0;
    return 0;
}

static int query_device(cae_ctx *ctx)
{
    cl_device_type type;
    cl_device_exec_capabilities exec;
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_NAME, sizeof ctx->device_name - 1,
                             ctx->device_name, NULL));
    CL_CHECK(clGetPlatformInfo(ctx->platform, CL_PLATFORM_NAME, sizeof ctx->platform_name - 1,
                               ctx->platform_name, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_TYPE, sizeof type, &type, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_EXECUTION_CAPABILITIES, sizeof exec, &exec, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ctx->max_alloc,
                             &ctx->max_alloc, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ctx->global_mem,
                             &ctx->global_mem, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof ctx->max_work_group,
                             &ctx->max_work_group, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ctx->local_mem,
                             &ctx->local_mem, NULL));
    ctx->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    ctx->native_kernels = (exec & CL_EXEC_NATIVE_KERNEL) != 0;
    CAE_TRY(choose_row_kernels(ctx));
    return choose_attention(ctx);
}

/* ---------------------------------------------------------------- program */

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
    FILE *f;
    long len;
    char *text;
    int head;

    snprintf(full, sizeof full, "%s/%s", dir, base ? base + 1 : path);
    f = fopen(full, "rb");
    if (!f) {
        cae_errorf("CAE_CL_KERNEL_DIR: cannot open %s: %s", full, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        cae_errorf("%s: cannot read: %s", full, strerror(errno));
        fclose(f);
        return NULL;
    }
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

/* ---------------------------------------------------------------- tuning */

/* The tuned parameters: opt->tune when given, else the device's tuning file
 * (a refused file has warned and counts as none). Sets the build options and
 * the 1-D work-group size; CLBlast's share is applied by cae_gemm_init. */
static void choose_tuning(cae_ctx *ctx, const cae_ctx_options *opt)
{
    static int said;
    cae_tune_device dev;

    ctx->tune_file[0] = '\0';
    memset(&ctx->tune, 0, sizeof ctx->tune);
    if (opt && opt->tune) {
        ctx->tune = *opt->tune;
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

/* ---------------------------------------------------------------- context */

/* The live contexts, so cae_release (which gets only the cl_mem) can find
 * the cae_ctx whose memory total to lower. Device buffers are created and
 * released on the thread that owns the context; a handful at most. */
#define MAX_LIVE_CTX 16
static cae_ctx *live_ctx[MAX_LIVE_CTX];

static void register_ctx(cae_ctx *ctx, int on)
{
    for (int i = 0; i < MAX_LIVE_CTX; i++) {
        if (on && !live_ctx[i]) {
            live_ctx[i] = ctx;
            return;
        }
        if (!on && live_ctx[i] == ctx)
            live_ctx[i] = NULL;
    }
}

int cae_ctx_init(cae_ctx *ctx, const cae_ctx_options *opt)
{
    cl_int err;
    cl_command_queue_properties props = 0;
    cae_gemm_choice gemm = opt ? opt->gemm : CAE_GEMM_AUTO;

    memset(ctx, 0, sizeof *ctx);
    register_ctx(ctx, 1);
    if (choose_device(ctx, opt ? opt->device_slot : 0) != 0) {
        register_ctx(ctx, 0);
        return -1;
    }
    if (query_device(ctx) != 0) {
        register_ctx(ctx, 0);
        return -1;
    }
    choose_tuning(ctx, opt);
    ctx->context = clCreateContext(NULL, 1, &ctx->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        cae_cl_error("clCreateContext", err, __FILE__, __LINE__);
        register_ctx(ctx, 0);
        return -1;
    }
    ctx->profiling = opt ? opt->profiling : 0;
    if (ctx->profiling)
        props |= CL_QUEUE_PROFILING_ENABLE;
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, props, &err);
    if (err != CL_SUCCESS) {
        cae_cl_error("clCreateCommandQueue", err, __FILE__, __LINE__);
        cae_ctx_free(ctx);
        return -1;
    }
    if (opt && opt->host_threads > 0)
        cae_gemm_limit_host_threads(opt->host_threads);
    if (build_program(ctx) != 0 || cae_gemm_init(ctx, gemm) != 0) {
        cae_ctx_free(ctx);
        return -1;
    }
    return 0;
}

void cae_ctx_free(cae_ctx *ctx)
{
    if (ctx->queue)
        clFinish(ctx->queue);
    cae_prof_clear(ctx);
    free(ctx->prof_events);
    cae_gemm_free(ctx);
    for (size_t i = 0; i < ctx->n_kernels; i++)
        clReleaseKernel(ctx->kernels[i].kernel);
    free(ctx->kernels);
    if (ctx->program)
        clReleaseProgram(ctx->program);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    register_ctx(ctx, 0);
    memset(ctx, 0, sizeof *ctx);
}

cl_kernel cae_kernel(cae_ctx *ctx, const char *name)
{
    cl_int err;
    cl_kernel k;
    for (size_t i = 0; i < ctx->n_kernels; i++)
        if (strcmp(ctx->kernels[i].name, name) == 0)
            return ctx->kernels[i].kernel;
    if (strlen(name) >= sizeof ctx->kernels[0].name) {
        cae_errorf("kernel name too long: %s", name);
        return NULL;
    }
    k = clCreateKernel(ctx->program, name, &err);
    if (err != CL_SUCCESS) {
        cae_errorf("clCreateKernel(\"%s\") failed: %s", name, cae_cl_error_name(err));
        return NULL;
    }
    if (ctx->n_kernels == ctx->cap_kernels) {
        size_t cap = ctx->cap_kernels ? 2 * ctx->cap_kernels : 32;
        cae_kernel_slot *grown = realloc(ctx->kernels, cap * sizeof *grown);
        if (!grown) {
            clReleaseKernel(k);
            cae_errorf("out of host memory");
            return NULL;
        }
        ctx->kernels = grown;
        ctx->cap_kernels = cap;
    }
    strcpy(ctx->kernels[ctx->n_kernels].name, name);
    ctx->kernels[ctx->n_kernels++].kernel = k;
    return k;
}

/* ---------------------------------------------------------------- launches */

static int set_arg(cl_kernel k, cl_uint index, size_t size, const void *value, const char *what)
{
    cl_int err = clSetKernelArg(k, index, size, value);
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        cae_errorf("clSetKernelArg(%s, arg %u, %s) failed: %s", name, index, what,
                   cae_cl_error_name(err));
        return -1;
    }
    return 0;
}

int cae_arg_buf(cl_kernel k, cl_uint *index, cae_buf b)
{
    cl_ulong off = b.off;
    CAE_TRY(set_arg(k, (*index)++, sizeof(cl_mem), b.mem ? &b.mem : NULL, "buffer"));
    return set_arg(k, (*index)++, sizeof off, &off, "offset");
}

int cae_arg_int(cl_kernel k, cl_uint *index, int v)
{
    cl_int x = v;
    return set_arg(k, (*index)++, sizeof x, &x, "int");
}

int cae_arg_uint(cl_kernel k, cl_uint *index, cl_uint v)
{
    return set_arg(k, (*index)++, sizeof v, &v, "uint");
}

int cae_arg_ulong(cl_kernel k, cl_uint *index, cl_ulong v)
{
    return set_arg(k, (*index)++, sizeof v, &v, "ulong");
}

int cae_arg_float(cl_kernel k, cl_uint *index, float v)
{
    cl_float x = v;
    return set_arg(k, (*index)++, sizeof x, &x, "float");
}

int cae_arg_local(cl_kernel k, cl_uint *index, size_t bytes)
{
    return set_arg(k, (*index)++, bytes, NULL, "local memory");
}

int cae_prof_record(cae_ctx *ctx, cl_event ev, const char *name)
{
    if (ctx->n_prof_events == ctx->cap_prof_events) {
        size_t cap = ctx->cap_prof_events ? 2 * ctx->cap_prof_events : 1024;
        cae_prof_event *grown = realloc(ctx->prof_events, cap * sizeof *grown);
        if (!grown) {
            clReleaseEvent(ev);
            cae_errorf("out of host memory keeping profiling events");
            return -1;
        }
        ctx->prof_events = grown;
        ctx->cap_prof_events = cap;
    }
    snprintf(ctx->prof_events[ctx->n_prof_events].name, sizeof ctx->prof_events[0].name, "%s", name);
    ctx->prof_events[ctx->n_prof_events++].event = ev;
    return 0;
}

void cae_prof_clear(cae_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_prof_events; i++)
        clReleaseEvent(ctx->prof_events[i].event);
    ctx->n_prof_events = 0;
}

int cae_launch(cae_ctx *ctx, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local)
{
    size_t g[3];
    cl_int err;
    cl_event ev = NULL;
    for (cl_uint d = 0; d < dims; d++) {
        g[d] = global[d] ? global[d] : 1;
        if (local && g[d] % local[d])
            g[d] += local[d] - g[d] % local[d];
    }
    err = clEnqueueNDRangeKernel(ctx->queue, k, dims, NULL, g, local, 0, NULL,
                                 ctx->profiling ? &ev : NULL);
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        cae_errorf("clEnqueueNDRangeKernel(%s) failed: %s", name, cae_cl_error_name(err));
        return -1;
    }
    ctx->launches++;
    if (ev) {
        char name[64] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        return cae_prof_record(ctx, ev, name);
    }
    return 0;
}

int cae_launch_1d(cae_ctx *ctx, cl_kernel k, size_t n)
{
    size_t wg = 0, local;
    if (n == 0)
        return 0;
    CL_CHECK(clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL));
    /* 64 by default: it keeps CPU work-groups coarse and suits every GPU;
     * cae-cl-tune may choose another. Never above the kernel's own limit. */
    local = wg < ctx->launch_wg ? wg : ctx->launch_wg;
    if (local == 0)
        local = 1;
    return cae_launch(ctx, k, 1, &n, &local);
}

int cae_launch_rows(cae_ctx *ctx, cl_kernel k, cl_uint scratch_arg, size_t rows, size_t per_item)
{
    size_t wg = 0, L = 1, limit = ctx->row_group;
    if (rows == 0)
        return 0;
    CL_CHECK(clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL));
    if (limit > wg)
        limit = wg;
    if (limit > ctx->local_mem / (per_item * sizeof(float)))
        limit = (size_t)(ctx->local_mem / (per_item * sizeof(float)));
    while (L * 2 <= limit)
        L *= 2;
    CAE_TRY(cae_arg_local(k, &scratch_arg, L * per_item * sizeof(float)));
    size_t global = rows * L;
    return cae_launch(ctx, k, 1, &global, &L);
}

/* ---------------------------------------------------------------- memory */

int cae_alloc(cae_ctx *ctx, size_t bytes, cl_mem *out)
{
    cl_int err;
    if (bytes == 0)
        bytes = 4;
    if (bytes > ctx->max_alloc) {
        cae_errorf("buffer of %zu bytes exceeds the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu)",
                   bytes, (unsigned long long)ctx->max_alloc);
        return -1;
    }
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        cae_errorf("clCreateBuffer(%zu bytes) failed: %s (device %s)", bytes,
                   cae_cl_error_name(err), ctx->device_name);
        *out = NULL;
        return -1;
    }
    ctx->dev_bytes += bytes;
    if (ctx->dev_bytes > ctx->dev_bytes_peak)
        ctx->dev_bytes_peak = ctx->dev_bytes;
    return 0;
}

/* Lower the memory total of the live context that owns mem (by its size,
 * never below zero: buffers made without cae_alloc were never counted). */
static void uncount(cl_mem mem)
{
    cl_context c = NULL;
    size_t size = 0;
    if (clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof c, &c, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS)
        return;
    for (int i = 0; i < MAX_LIVE_CTX; i++)
        if (live_ctx[i] && live_ctx[i]->context == c) {
            cae_ctx *ctx = live_ctx[i];
            ctx->dev_bytes -= size < ctx->dev_bytes ? size : ctx->dev_bytes;
            return;
        }
}

void cae_release(cl_mem *mem)
{
    if (*mem) {
        uncount(*mem);
        clReleaseMemObject(*mem);
    }
    *mem = NULL;
}

int cae_write(cae_ctx *ctx, cae_buf dst, const void *src, size_t bytes)
{
    if (bytes == 0)
        return 0;
    CL_CHECK(clEnqueueWriteBuffer(ctx->queue, dst.mem, CL_TRUE, dst.off * 4, bytes, src, 0, NULL, NULL));
    return 0;
}

int cae_read(cae_ctx *ctx, void *dst, cae_buf src, size_t bytes)
{
    if (bytes == 0)
        return 0;
    CL_CHECK(clEnqueueReadBuffer(ctx->queue, src.mem, CL_TRUE, src.off * 4, bytes, dst, 0, NULL, NULL));
    return 0;
}

int cae_fill_float(cae_ctx *ctx, cae_buf dst, float value, size_t n)
{
    cl_kernel k = cae_kernel(ctx, "fill_float");
    cl_uint a = 0;
    if (!k)
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dst));
    CAE_TRY(cae_arg_float(k, &a, value));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    return cae_launch_1d(ctx, k, n);
}

int cae_fill_zero(cae_ctx *ctx, cae_buf dst, size_t n)
{
    return cae_fill_float(ctx, dst, 0.0f, n);
}

int cae_copy(cae_ctx *ctx, cae_buf dst, cae_buf src, size_t n)
{
    cl_kernel k = cae_kernel(ctx, "copy_float");
    cl_uint a = 0;
    if (!k)
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dst));
    CAE_TRY(cae_arg_buf(k, &a, src));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    return cae_launch_1d(ctx, k, n);
}

int cae_finish(cae_ctx *ctx)
{
    CL_CHECK(clFinish(ctx->queue));
    return 0;
}

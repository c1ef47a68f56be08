/* dalle-clfft-probe.c: the least an FFT convolution of the DALL-E 7x7 input
 * layer (3 -> 256 channels, batch 8 at 112x112) costs with clFFT, to compare
 * with im2col + GEMM (the "input" line of ./bench-dalle).
 *
 * Times the forward R2C transforms of the 8*3 zero-padded input planes, the
 * complex multiply-accumulate over the 3 input channels (filter spectra
 * taken as precomputed), and the inverse C2R transforms of the 8*256 output
 * planes. Padding and cropping copies are left out, so a real FFT
 * convolution is slower still. Not built by make (clFFT is not a
 * dependency):
 *
 *   apt-get install libclfft-dev
 *   cc -std=c11 -O2 -o /tmp/probe tools/dalle-clfft-probe.c -lclFFT -lOpenCL
 *   /tmp/probe [N]      N: padded plane size, at least 112 + 6 (default 128)
 *
 * The result on PoCL is in src/tokenizer/dalle.c's header comment. */
#define _POSIX_C_SOURCE 200809L
#define CL_TARGET_OPENCL_VERSION 120
#include <clFFT.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHECK(call)                                                              \
    do {                                                                         \
        int e_ = (int)(call);                                                    \
        if (e_ != 0) {                                                           \
            fprintf(stderr, "probe: %s failed: %d (line %d)\n", #call, e_, __LINE__); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* y[b, o, f] = sum_c x[b, c, f] * w[o, c, f], complex */
static const char *mac_source =
    "__kernel void mac(__global float2 *y, __global const float2 *x,\n"
    "                  __global const float2 *w, int Cin, int Cout, int F)\n"
    "{\n"
    "    int f = get_global_id(0), o = get_global_id(1), b = get_global_id(2);\n"
    "    if (f >= F) return;\n"
    "    float2 s = (float2)(0.0f, 0.0f);\n"
    "    for (int c = 0; c < Cin; c++) {\n"
    "        float2 a = x[((size_t)b * Cin + c) * F + f], v = w[((size_t)o * Cin + c) * F + f];\n"
    "        s += (float2)(a.x * v.x - a.y * v.y, a.x * v.y + a.y * v.x);\n"
    "    }\n"
    "    y[((size_t)b * Cout + o) * F + f] = s;\n"
    "}\n";

static cl_mem buffer(cl_context ctx, size_t bytes)
{
    cl_int e;
    cl_mem m = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &e);
    CHECK(e);
    return m;
}

static clfftPlanHandle plan(cl_context ctx, cl_command_queue q, size_t N, int forward, size_t batch)
{
    size_t len[2] = {N, N}, real[2] = {1, N}, half[2] = {1, N / 2 + 1};
    size_t real_dist = N * N, half_dist = N * (N / 2 + 1);
    clfftPlanHandle p;
    CHECK(clfftCreateDefaultPlan(&p, ctx, CLFFT_2D, len));
    CHECK(clfftSetPlanPrecision(p, CLFFT_SINGLE));
    CHECK(clfftSetResultLocation(p, CLFFT_OUTOFPLACE));
    CHECK(clfftSetPlanBatchSize(p, batch));
    if (forward) {
        CHECK(clfftSetLayout(p, CLFFT_REAL, CLFFT_HERMITIAN_INTERLEAVED));
        CHECK(clfftSetPlanInStride(p, CLFFT_2D, real));
        CHECK(clfftSetPlanOutStride(p, CLFFT_2D, half));
        CHECK(clfftSetPlanDistance(p, real_dist, half_dist));
    } else {
        CHECK(clfftSetLayout(p, CLFFT_HERMITIAN_INTERLEAVED, CLFFT_REAL));
        CHECK(clfftSetPlanInStride(p, CLFFT_2D, half));
        CHECK(clfftSetPlanOutStride(p, CLFFT_2D, real));
        CHECK(clfftSetPlanDistance(p, half_dist, real_dist));
    }
    CHECK(clfftBakePlan(p, 1, &q, NULL, NULL));
    return p;
}

int main(int argc, char **argv)
{
    size_t N = argc > 1 ? (size_t)atoi(argv[1]) : 128, B = 8, Cin = 3, Cout = 256;
    size_t F = N * (N / 2 + 1);
    cl_platform_id platform;
    cl_device_id dev;
    cl_int e;
    float quarter = 0.25f;
    double best[3] = {1e9, 1e9, 1e9}, t0;

    if (N < 118) {
        fprintf(stderr, "probe: N must be at least 118 (112 + 7 - 1)\n");
        return 2;
    }
    CHECK(clGetPlatformIDs(1, &platform, NULL));
    CHECK(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &dev, NULL));
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
    CHECK(e);
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &e);
    CHECK(e);
    clfftSetupData setup;
    CHECK(clfftInitSetupData(&setup));
    CHECK(clfftSetup(&setup));

    cl_mem xr = buffer(ctx, B * Cin * N * N * 4), xc = buffer(ctx, B * Cin * F * 8);
    cl_mem wc = buffer(ctx, Cout * Cin * F * 8), yc = buffer(ctx, B * Cout * F * 8);
    cl_mem yr = buffer(ctx, B * Cout * N * N * 4);
    CHECK(clEnqueueFillBuffer(q, xr, &quarter, 4, 0, B * Cin * N * N * 4, 0, NULL, NULL));
    CHECK(clEnqueueFillBuffer(q, wc, &quarter, 4, 0, Cout * Cin * F * 8, 0, NULL, NULL));
    CHECK(clFinish(q));

    t0 = now();
    clfftPlanHandle fwd = plan(ctx, q, N, 1, B * Cin), inv = plan(ctx, q, N, 0, B * Cout);
    printf("N=%zu: plans baked in %.1f s\n", N, now() - t0);

    cl_program prog = clCreateProgramWithSource(ctx, 1, &mac_source, NULL, &e);
    CHECK(e);
    CHECK(clBuildProgram(prog, 1, &dev, "", NULL, NULL));
    cl_kernel mac = clCreateKernel(prog, "mac", &e);
    CHECK(e);
    int iC = (int)Cin, iO = (int)Cout, iF = (int)F;
    CHECK(clSetKernelArg(mac, 0, sizeof(cl_mem), &yc));
    CHECK(clSetKernelArg(mac, 1, sizeof(cl_mem), &xc));
    CHECK(clSetKernelArg(mac, 2, sizeof(cl_mem), &wc));
    CHECK(clSetKernelArg(mac, 3, sizeof iC, &iC));
    CHECK(clSetKernelArg(mac, 4, sizeof iO, &iO));
    CHECK(clSetKernelArg(mac, 5, sizeof iF, &iF));

    for (int rep = 0; rep < 4; rep++) {   /* rep 0 warms up */
        size_t global[3] = {(F + 63) / 64 * 64, Cout, B}, local[3] = {64, 1, 1};
        double t[4];
        t[0] = now();
        CHECK(clfftEnqueueTransform(fwd, CLFFT_FORWARD, 1, &q, 0, NULL, NULL, &xr, &xc, NULL));
        CHECK(clFinish(q));
        t[1] = now();
        CHECK(clEnqueueNDRangeKernel(q, mac, 3, NULL, global, local, 0, NULL, NULL));
        CHECK(clFinish(q));
        t[2] = now();
        CHECK(clfftEnqueueTransform(inv, CLFFT_BACKWARD, 1, &q, 0, NULL, NULL, &yc, &yr, NULL));
        CHECK(clFinish(q));
        t[3] = now();
        for (int i = 0; rep > 0 && i < 3; i++)
            if (t[i + 1] - t[i] < best[i])
                best[i] = t[i + 1] - t[i];
    }
    printf("N=%zu batch %zu: forward R2C (%zu planes) %.1f ms, complex MAC %.1f ms, inverse C2R "
           "(%zu planes) %.1f ms; total %.1f ms\n", N, B, B * Cin, 1e3 * best[0], 1e3 * best[1],
           B * Cout, 1e3 * best[2], 1e3 * (best[0] + best[1] + best[2]));
    CHECK(clfftDestroyPlan(&fwd));
    CHECK(clfftDestroyPlan(&inv));
    CHECK(clfftTeardown());
    return 0;
}

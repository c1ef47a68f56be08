/* fill.cl: set a range of floats to one value (zeroing uses
 * clEnqueueFillBuffer instead). */
__kernel void fill_float(__global float *x, const ulong x_off, const float value, const ulong n)
{
    size_t i = get_global_id(0);
    x += x_off;
    if (i < n)
        x[i] = value;
}

/* dst[i] = src[i]; a kernel rather than clEnqueueCopyBuffer so that kernel
 * checkers (oclgrind) track the copied bytes as initialized. */
__kernel void copy_float(__global float *dst, const ulong dst_off, __global const float *src,
                         const ulong src_off, const ulong n)
{
    size_t i = get_global_id(0);
    dst += dst_off;
    src += src_off;
    if (i < n)
        dst[i] = src[i];
}

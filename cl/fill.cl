/* fill.cl: set a range of floats to one value (zeroing uses
 * clEnqueueFillBuffer instead). */
__kernel void fill_float(__global float *x, const ulong x_off, const float value, const ulong n)
{
    size_t i = get_global_id(0);
    x += x_off;
    if (i < n)
        x[i] = value;
}

/* group.cl: work-group reductions shared by the row kernels that take one
 * row per work-group (the GPU shapes). The work-group size is a power of
 * two chosen by the host (cae_launch_rows), and scratch holds at least one
 * float per work-item. Every work-item of the group must call these. */

/* sum of v over the work-group, returned to every work-item */
float group_sum(float v, __local float *scratch)
{
    const uint lid = get_local_id(0), L = get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = L / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next reduction */
    return r;
}

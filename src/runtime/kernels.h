/* kernels.h: every kernel of the program built from cl/, by id.
 *
 * CAE_KERNELS lists each __kernel function once (grouped by its cl/ file).
 * cae_program_build creates all of them when a context is made, and ops
 * launch ctx->kernel[CAE_K_name]: no lookup by name on any launch. The
 * build checks that the program holds exactly these kernels, so adding a
 * __kernel to cl/ without listing it here fails loudly.
 *
 * CAE_KERNEL_LIMITS holds the constants that host code and cl/ must agree
 * on, defined here once: the host uses CAE_<name>, and the program gets
 * -D<name>=<value> among its build options (so they are part of the binary
 * cache's key too). The .cl files have no defaults for them: a build without
 * the option stops at an #error.
 */
#ifndef CAE_KERNELS_H
#define CAE_KERNELS_H

#define CAE_KERNELS(X)                                                        \
    /* fill.cl */                                                             \
    X(fill_float) X(copy_float)                                               \
    /* layernorm.cl */                                                        \
    X(layernorm_forward) X(layernorm_backward_dx) X(layernorm_backward_dwdb)  \
    X(layernorm_forward_wg) X(layernorm_backward_dx_wg)                       \
    /* gelu.cl */                                                             \
    X(gelu_forward) X(gelu_backward) X(gelu_bias_forward)                     \
    /* residual.cl */                                                         \
    X(residual_forward) X(residual_backward_dy) X(residual_backward_dg)       \
    X(residual_add)                                                           \
    /* linear.cl */                                                           \
    X(linear_bias_add) X(linear_colsum_add)                                   \
    /* mha.cl */                                                              \
    X(mha_fused_forward) X(mha_fused_backward_dq) X(mha_fused_backward_dkv)   \
    /* softmax.cl */                                                          \
    X(softmax_forward) X(softmax_backward)                                    \
    /* loss.cl */                                                             \
    X(loss_cross_entropy) X(loss_cross_entropy_wg) X(loss_mse)                \
    /* reduce.cl */                                                           \
    X(reduce_partial) X(reduce_final) X(reduce_scale)                         \
    /* tokens.cl */                                                           \
    X(tokens_gather) X(tokens_scatter_add) X(tokens_copy_blocks)              \
    X(tokens_broadcast_row) X(tokens_patchify)                                \
    /* conv.cl */                                                             \
    X(conv_im2col) X(conv_im2col_rows) X(conv_bias_act) X(conv_maxpool2)      \
    X(conv_argmax_gather)                                                     \
    /* adamw.cl */                                                            \
    X(adamw_clip_coef) X(adamw_update)                                        \
    /* batchnorm.cl */                                                        \
    X(batchnorm_forward_train) X(batchnorm_forward_eval) X(batchnorm_backward) \
    /* finetune.cl */                                                         \
    X(finetune_mean_pool) X(finetune_mean_pool_backward) X(finetune_soft_ce)

#define CAE_KERNEL_LIMITS(X)                                                  \
    X(MHA_MAX_DH, 128) /* the widest head the fused attention holds (mha.cl) */ \
    X(GELU_WIDTH, 16)  /* elements per GELU work-item: one float16 (gelu.cl) */

enum {
#define CAE_KERNEL_LIMIT(name, value) CAE_##name = value,
    CAE_KERNEL_LIMITS(CAE_KERNEL_LIMIT)
#undef CAE_KERNEL_LIMIT
};

/* " -DMHA_MAX_DH=128 -DGELU_WIDTH=16": the limits as build options */
#define CAE_KERNEL_LIMIT_OPTION(name, value) " -D" #name "=" #value
#define CAE_KERNEL_LIMIT_OPTIONS CAE_KERNEL_LIMITS(CAE_KERNEL_LIMIT_OPTION)

typedef enum {
#define CAE_KERNEL_ID(name) CAE_K_##name,
    CAE_KERNELS(CAE_KERNEL_ID)
#undef CAE_KERNEL_ID
    CAE_KERNEL_COUNT
} cae_kernel_id;

#endif

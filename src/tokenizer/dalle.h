/* dalle.h: the DALL-E dVAE encoder (the CAE tokenizer) on the device.
 *
 * n_hid 256, vocabulary 8192: input 7x7 conv (3 -> n_hid), four groups of
 * two residual blocks (widths n_hid, 2 n_hid, 4 n_hid, 8 n_hid) with a 2x2
 * max-pool after groups 1-3, then ReLU and a 1x1 conv to the vocabulary.
 * Block: id_path(x) + 1/64 * res_path(x), res_path = ReLU, 3x3 conv to
 * n_out/4, ReLU, 3x3, ReLU, 3x3, ReLU, 1x1 to n_out; id_path a 1x1 conv
 * when the widths differ. All convs have bias and 'same' padding. A patch's
 * label is the argmax over the vocabulary at its grid cell.
 *
 * Weights: a safetensors file from cae-cl-convert-dall-e, keys as the
 * official module's state_dict (blocks.input.w, blocks.group_1.block_1.
 * res_path.conv_1.w, ..., blocks.output.conv.b), w in [out,in,k,k]. */
#ifndef CAE_DALLE_H
#define CAE_DALLE_H

#include "runtime/runtime.h"

#include <stddef.h>
#include <stdio.h>

typedef struct cae_dalle cae_dalle;

/* Load and check the weights (n_hid and vocabulary are read from their
 * shapes), plan memory for batch images of image_size (a multiple of 8).
 * A missing file or a tensor of the wrong shape is refused with one line
 * naming it (so is a tensor that is not part of the encoder).
 * CAE_DALLE_COL_FLOATS caps the im2col matrix (default 64 Mi floats); the
 * convolutions then run on chunks of images (at least one image at a time).
 * CAE_DALLE_KERNELS=cpu|gpu picks the kernels' work shapes (default: by the
 * device's type); both compute the same values. */
int cae_dalle_load(cae_dalle **out, cae_ctx *ctx, const char *path, size_t batch, int image_size);
void cae_dalle_free(cae_dalle *d);
int cae_dalle_vocab(const cae_dalle *d);
int cae_dalle_grid(const cae_dalle *d); /* image_size / 8 */

/* The GEMMs one cae_dalle_labels call runs for the weights at path (n_hid
 * and the vocabulary from the file's header; no weights are read), batch
 * images of image_size and a device that allocates at most max_alloc bytes
 * at once (the im2col chunks as cae_dalle_load plans them,
 * CAE_DALLE_COL_FLOATS included): fn(user, m, n, k, count) per distinct
 * call site and chunk size, each a row-major m x n x k product without
 * transposes. 0, or -1 with one line naming the problem. */
typedef void (*cae_dalle_gemm_fn)(void *user, size_t m, size_t n, size_t k, size_t count);
int cae_dalle_gemms(const char *path, size_t batch, int image_size, cl_ulong max_alloc,
                    cae_dalle_gemm_fn fn, void *user);

/* view: [B,3,S2,S2] already mapped to [0.1, 0.9]; mask_idx: int [B,M], the
 * masked patch indices in raster order; labels: int [B*M] out (-1 where an
 * index lies outside [0, G*G)). B and S2 are the load's batch and
 * image_size; a buffer too small for them (after its offset) is refused. */
int cae_dalle_labels(cae_dalle *d, cae_buf labels, cae_buf view, cae_buf mask_idx, size_t M);
/* The full logits [B, vocab, G, G] of the last call (for conformance tests). */
cae_buf cae_dalle_logits(const cae_dalle *d);

/* Per-stage wall-clock timing, for benchmarks (an extension of the lead's
 * interface). When on, cae_dalle_labels waits for the queue after each
 * stage and adds its time to a table (im2col, GEMM and other kernels per
 * section: input, group_1..4, output) that cae_dalle_print_timing prints
 * per call. Off by default: normal calls never wait. Turning it on or off
 * clears the table. */
void cae_dalle_set_timing(cae_dalle *d, int on);
void cae_dalle_print_timing(const cae_dalle *d, FILE *out);

#endif

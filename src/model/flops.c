/* flops.c: the step's analytic FLOP count (conventions in flops.h). */
#include "model/flops.h"

#include <string.h>

/* a linear layer over rows x in -> out */
static double lin(double rows, double in, double out)
{
    return 2.0 * rows * in * out;
}

/* one self-attention block over B samples of N tokens, width C, MLP hid,
 * forward only: qkv, scores, values, proj, fc1, fc2 */
static double block_fwd(double B, double N, double C, double hid)
{
    double T = B * N;
    return lin(T, C, 3 * C) + 2.0 * B * N * N * C * 2.0 + lin(T, C, C) + lin(T, C, hid) +
           lin(T, hid, C);
}

/* one regressor block: M queries per sample over V + M keys */
static double rblock_fwd(double B, double V, double M, double C, double hid)
{
    double Q = B * M, KV = B * (V + M);
    return lin(Q, C, C) + 2.0 * lin(KV, C, C) + 2.0 * B * M * (V + M) * C * 2.0 + lin(Q, C, C) +
           lin(Q, C, hid) + lin(Q, hid, C);
}

void cae_flops_count(const cae_config *c, size_t batch, size_t n_params, cae_flops *f)
{
    double B = (double)batch, D = c->embed_dim, Dd = c->decoder_embed_dim;
    double V = c->num_visible, M = c->num_mask_patches, K = c->decoder_num_classes;
    double P = c->patch_size, hid = c->mlp_hidden, dhid = c->decoder_mlp_hidden;
    double pin = 3.0 * P * P, R = B * M;

    memset(f, 0, sizeof *f);
    /* encoder: patch embedding (weight gradient only) and blocks (3x) */
    f->encoder = 2.0 * lin(B * V, pin, D) + 3.0 * c->depth * block_fwd(B, V + 1, D, hid);
    f->alignment = lin(B * M, pin, D) + c->depth * block_fwd(B, M + 1, D, hid);
    if (c->decoder_embed_dim != c->embed_dim) {
        f->projection = 3.0 * lin(B * (V + 1), D, Dd);
        f->alignment += lin(B * (M + 1), D, Dd);
    }
    if (!cae_config_has_alignment(c)) /* cae_step.c skips the pass */
        f->alignment = 0.0;
    f->regressor = 3.0 * c->regressor_depth * rblock_fwd(B, V, M, Dd, dhid);
    f->decoder = 3.0 * c->decoder_depth * block_fwd(B, M, Dd, dhid);
    f->head = 3.0 * lin(R, Dd, K);
    f->loss = 6.0 * R * K + 4.0 * R * Dd;
    f->optimizer = 14.0 * (double)n_params;
    f->total = f->encoder + f->alignment + f->projection + f->regressor + f->decoder + f->head +
               f->loss + f->optimizer;
}

void cae_flops_print(const cae_flops *f, FILE *out)
{
    const struct {
        const char *name;
        double v;
    } parts[] = {{"encoder (fwd+bwd)", f->encoder},   {"alignment pass (fwd)", f->alignment},
                 {"projection (fwd+bwd)", f->projection}, {"regressor (fwd+bwd)", f->regressor},
                 {"decoder (fwd+bwd)", f->decoder},   {"head (fwd+bwd)", f->head},
                 {"loss", f->loss},                    {"optimizer", f->optimizer}};
    fprintf(out, "FLOPs per step:\n");
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        fprintf(out, "  %-24s %10.3f GFLOP %5.1f%%\n", parts[i].name, parts[i].v * 1e-9,
                f->total > 0 ? 100.0 * parts[i].v / f->total : 0.0);
    fprintf(out, "  %-24s %10.3f GFLOP\n", "total", f->total * 1e-9);
}

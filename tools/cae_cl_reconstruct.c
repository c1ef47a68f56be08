/* cae-cl-reconstruct: the reconstruction picture of a pixel-target
 * checkpoint (src/train/reconstruct.h), the one cae-cl-train draws at each
 * checkpoint, for any checkpoint, images and masks.
 *
 *   cae-cl-reconstruct --finetune CKPT --out PNG [--data_path DIR]
 *                      [--mask_generator block|random] [--num_mask_patches M]
 *                      [--seed S] [model flags]
 *
 * The model's sizes, target and normalization come from the arguments the
 * checkpoint records (its training command line and resolved sizes), then
 * from the flags given here, which win. --data_path defaults to the
 * training run's, and the held-out rule of reconstruct.h picks the images;
 * --seed defaults to the training pictures' mask seed, so the defaults draw
 * exactly the training run's picture. --resume is accepted for --finetune.
 * A DALL-E-target checkpoint has no pixel decoder: refused.
 */
#include "model/model.h"
#include "runtime/errors.h"
#include "safetensors/safetensors.h"
#include "train/args.h"
#include "train/checkpoint.h"
#include "train/reconstruct.h"

#include <stdlib.h>
#include <string.h>

/* argv with the checkpoint's recorded arguments in front of the user's
 * (argv[1..]): the recorded program name, "#" and "resolved:" dropped.
 * Returns the count, 0 when the file records none, -1 on error. */
static int with_recorded(const char *ckpt, int argc, char **argv, char **text, char ***out)
{
    cae_st_file f;
    const char *rec;
    char *save = NULL, *tok;
    char **v;
    int n = 0;
    if (cae_st_read_header(&f, ckpt) != 0)
        return -1;
    rec = cae_st_meta(&f, "args");
    *text = rec && rec[0] ? strdup(rec) : NULL;
    cae_st_free(&f);
    if (!*text)
        return 0;
    v = calloc(strlen(*text) / 2 + (size_t)argc + 2, sizeof *v);
    if (!v) {
        cae_errorf("out of memory");
        return -1;
    }
    v[n++] = argv[0];
    tok = strtok_r(*text, " ", &save); /* the training program */
    while (tok && (tok = strtok_r(NULL, " ", &save)))
        if (strcmp(tok, "#") != 0 && strcmp(tok, "resolved:") != 0)
            v[n++] = tok;
    for (int i = 1; i < argc; i++)
        v[n++] = argv[i];
    *out = v;
    return n;
}

static int draw(cae_args *a, const char *ckpt, uint64_t seed)
{
    cae_ctx ctx;
    cae_ctx_options opt = {.gemm = a->gemm};
    cae_dataset *ds = NULL;
    cae_recon r = {0};
    cae_model m;
    const char *what;
    int rc = 1, n;

    if (cae_args_choose_target(a, 0) != 0 || cae_config_finish(&a->model) != 0)
        return 1;
    if (cae_recon_open_heldout(&ds, a->data_path, &what) != 0)
        return 1;
    n = cae_dataset_len(ds) < CAE_RECON_IMAGES ? (int)cae_dataset_len(ds) : CAE_RECON_IMAGES;
    if (cae_recon_init(&r, a, n) != 0 || cae_recon_load(&r, ds, a, seed) != 0)
        goto out_data;
    if (cae_ctx_init(&ctx, &opt) != 0)
        goto out_data;
    if (cae_model_init(&m, &ctx, &a->model, (size_t)n) != 0)
        goto out_ctx;
    if (cae_checkpoint_load(ckpt, &ctx, &m.table, &m.params, NULL, NULL, NULL) == 0 &&
        cae_recon_write(&r, &m, a->out) == 0) {
        printf("wrote %s: %d images of %s, %d of %d patches masked\n", a->out, n, what, r.M,
               r.G * r.G);
        rc = 0;
    }
    cae_model_free(&m);
out_ctx:
    cae_ctx_free(&ctx);
out_data:
    cae_recon_free(&r);
    cae_dataset_free(ds);
    return rc;
}

int main(int argc, char **argv)
{
    cae_args a;
    const char *ckpt;
    char *text = NULL, **argv2 = NULL;
    int n, rc;
    uint64_t seed;

    if (cae_args_parse(&a, argc, argv) != 0)
        return 2;
    if (a.help) {
        cae_args_usage(stdout, "cae-cl-reconstruct",
                       "The reconstruction picture of a pixel-target checkpoint.\n"
                       "  --finetune CKPT   the checkpoint (--resume is accepted too)\n"
                       "  --out PNG         the picture: originals, masked inputs, predictions\n"
                       "                    pasted in, predictions alone (rows)");
        return 0;
    }
    ckpt = a.finetune ? a.finetune : a.resume;
    if (!ckpt || !a.out) {
        cae_errorf("cae-cl-reconstruct needs --finetune CKPT and --out PNG (see --help)");
        return 2;
    }
    seed = cae_args_given(argc, argv, "seed") ? (uint64_t)a.seed : CAE_RECON_SEED;
    n = with_recorded(ckpt, argc, argv, &text, &argv2);
    if (n < 0 || (n > 0 && cae_args_parse(&a, n, argv2) != 0)) {
        free(text);
        free(argv2);
        return n < 0 ? 1 : 2;
    }
    if (a.discrete_vae_type && strcmp(a.discrete_vae_type, "dall-e") == 0) {
        cae_errorf("%s: trained with the DALL-E target: there is no pixel decoder to draw "
                   "reconstructions with", ckpt);
        rc = 1;
    } else {
        rc = draw(&a, ckpt, seed);
    }
    free(text);
    free(argv2);
    return rc;
}

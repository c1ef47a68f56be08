/* checkpoint.h: training checkpoints as safetensors.
 *
 * checkpoint-<epoch>.safetensors holds the model under the official keys,
 * the AdamW moments under optimizer.exp_avg.<key> and
 * optimizer.exp_avg_sq.<key>, and metadata: format version, epoch, step
 * (global), seed, the AdamW step count, the steps per epoch the run had
 * (so that a run at another batch size resumes by epoch) and the full
 * argument list. It is
 * written to a temporary file, fsynced and renamed. Loading validates the
 * whole file (every key, shape and dtype) before anything on the device is
 * touched. */
#ifndef CAE_CHECKPOINT_H
#define CAE_CHECKPOINT_H

#include "model/params.h"
#include "runtime/runtime.h"

#include <stddef.h>
#include <stdint.h>

#define CAE_CHECKPOINT_FORMAT "cae-cl-checkpoint-1"

typedef struct {
    uint64_t epoch;      /* epochs completed */
    uint64_t step;       /* global steps completed */
    uint64_t seed;
    uint64_t adam_steps; /* AdamW's t */
    uint64_t steps_per_epoch; /* of the run that saved it; 0: not recorded */
    char args[8192];     /* the command line, for the record */
} cae_ckpt_meta;

/* moments may be NULL (a weights-only file, e.g. for evaluation); meta may
 * be NULL too (zeros and an empty argument list are recorded). Metadata
 * keys: format, epoch, step, seed, adam_steps, steps_per_epoch, args,
 * n_params (steps_per_epoch is optional on reading: 0 when absent). */
int cae_checkpoint_save(const char *path, cae_ctx *ctx, const cae_param_table *t,
                        const cae_arena *params, const cae_arena *exp_avg,
                        const cae_arena *exp_avg_sq, const cae_ckpt_meta *meta);
/* exp_avg/exp_avg_sq NULL: only the model is loaded (moments may be
 * absent from the file then). Refuses a file of another model with one line
 * naming the tensor. A file whose format metadata is not a
 * cae-cl-checkpoint-<N> (a weights file such as cae-cl-convert-checkpoint or
 * tools/reference write) loads only this way, with meta all zero; its
 * derived official tensors (encoder.pos_embed, rd_pos_embed,
 * alignment_encoder.*, frozen regressor gammas) are accepted and ignored.
 * meta may be NULL. On a device error midway the arenas written so far keep
 * the new values; on any other error none is touched. */
int cae_checkpoint_load(const char *path, cae_ctx *ctx, const cae_param_table *t,
                        const cae_arena *params, const cae_arena *exp_avg,
                        const cae_arena *exp_avg_sq, cae_ckpt_meta *meta);
/* The newest checkpoint-<epoch>.safetensors in dir that reads back whole
 * (a truncated or corrupt one is reported and skipped); 1 when there is
 * none (or no folder dir), 0 when found (path filled), -1 on error. The one
 * found is validated like a load with moments: one that reads back whole but
 * does not fit t (another model, format or no AdamW state) is an error
 * naming the tensor, not a reason to start afresh over it. PATH.tmp.<pid>
 * leftovers are ignored. */
int cae_checkpoint_latest(const char *dir, const cae_param_table *t, char *path, size_t size);

/* ---- the programs' checkpoint files (cae-cl-train, cae-cl-finetune, the
 * probes), all in --output_dir ---- */
/* dir/checkpoint-<tag>.safetensors (a probe's head: tag "linear") into
 * path; -1 after one line naming --output_dir when it does not fit. */
int cae_checkpoint_path(char *path, size_t size, const char *dir, const char *tag);
/* dir/checkpoint-<epoch>.safetensors, as cae_checkpoint_path. */
int cae_checkpoint_epoch_path(char *path, size_t size, const char *dir, uint64_t epoch);
/* dir/checkpoint-<epoch>.safetensors removed (a later one supersedes it);
 * an absent file is fine, any other failure a warning. */
void cae_checkpoint_remove(const char *dir, uint64_t epoch);
/* The command line argv[0..argc) joined by spaces into out (a meta.args),
 * cut to size - 1 bytes: 1 when cut, else 0. */
int cae_checkpoint_args(char *out, size_t size, int argc, char **argv);
/* The checkpoint a run resumes from: resume when given, else with
 * auto_resume the newest of dir (cae_checkpoint_latest, into found);
 * *from is NULL when there is none. -1 on error (reported). */
int cae_checkpoint_resume_from(const char *resume, int auto_resume, const char *dir,
                               const cae_param_table *t, char *found, size_t size,
                               const char **from);

#endif

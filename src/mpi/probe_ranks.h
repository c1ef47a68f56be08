/* probe_ranks.h: the probes' multi-rank hooks (src/eval/probe.h's
 * cae_probe_ranks) over Open MPI: gradient averages and count sums with
 * MPI_Allreduce, rank 0's BatchNorm statistics with MPI_Bcast; and the
 * probing programs' common main(). */
#ifndef CAE_PROBE_RANKS_H
#define CAE_PROBE_RANKS_H

#include "mpi/dist.h"
#include "eval/probe.h"

/* Fills r from d (which must outlive the run). */
void cae_probe_ranks_init(cae_probe_ranks *r, cae_dist *d);

/* A probing program: what main() needs besides its head. */
typedef struct {
    const char *name;  /* "cae-cl-linear", for --help */
    const char *about; /* --help's first line (the common ones follow) */
    const char *head;  /* its checkpoint is checkpoint-<head>.safetensors */
    const char *linear_type; /* the official --linear_type it implements */
    /* Trains or evaluates (--eval) over p, whose flags are parsed and whose
     * ranks are set; 0, or 1 after the cause was reported. */
    int (*run)(cae_probe *p, void *head_state, int argc, char **argv);
    /* Frees what run built of the head, however far it got. */
    void (*free_head)(void *head_state);
} cae_probe_program;

/* The whole program: MPI setup, flags, --help / --list-devices, the --eval
 * check, prog->run, prog->free_head and cae_probe_teardown, and on failure
 * under several ranks an abort that stops the others. Returns the exit
 * status. */
int cae_probe_main(int argc, char **argv, const cae_probe_program *prog, cae_probe *p,
                   void *head_state);

#endif

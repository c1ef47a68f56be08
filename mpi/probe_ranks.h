/* probe_ranks.h: the probes' multi-rank hooks (src/probe.h's
 * cae_probe_ranks) over Open MPI: gradient averages and count sums with
 * MPI_Allreduce, rank 0's BatchNorm statistics with MPI_Bcast. */
#ifndef CAE_PROBE_RANKS_H
#define CAE_PROBE_RANKS_H

#include "dist.h"
#include "probe.h"

/* Fills r from d (which must outlive the run). */
void cae_probe_ranks_init(cae_probe_ranks *r, cae_dist *d);

#endif

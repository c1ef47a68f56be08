/* mpi_check.h: MPI_TRY, the MPI counterpart of CL_CHECK: on failure, one
 * line with the call's text, MPI's own error string and file:line, then
 * return -1 from the enclosing function. */
#ifndef CAE_MPI_CHECK_H
#define CAE_MPI_CHECK_H

#include "runtime/errors.h"

#include <mpi.h>

#define MPI_TRY(call)                                                          \
    do {                                                                       \
        int mpi_err_ = (call);                                                 \
        if (mpi_err_ != MPI_SUCCESS) {                                         \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                               \
            int mpi_len_ = 0;                                                  \
            MPI_Error_string(mpi_err_, mpi_msg_, &mpi_len_);                   \
            cae_errorf("%s failed: %s (%s:%d)", #call, mpi_msg_, __FILE__,     \
                       __LINE__);                                              \
            return -1;                                                         \
        }                                                                      \
    } while (0)

#endif

#!/bin/sh
# allreduce-mpi.sh: the gradient all-reduce suite (tests/check/test_allreduce)
# under mpirun with 2 ranks and with 3 (uneven splits of every bucket).
# Each rank keeps its own PoCL kernel cache: a folder per node-local rank
# under POCL_CACHE_DIR when that is set, else src/mpi/dist.c's default.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
prog="$top/tests/check/test_allreduce"
cae_need_mpirun 900 # a rank stuck in a collective must not hang make check
for np in 2 3; do
    echo "== $np ranks"
    # shellcheck disable=SC2016 # expanded by the inner shell, per rank
    $limit mpirun --allow-run-as-root --oversubscribe -np "$np" -x CK_FORK=no \
        sh -c 'if [ -n "${POCL_CACHE_DIR:-}" ]; then
                   POCL_CACHE_DIR="$POCL_CACHE_DIR/rank${OMPI_COMM_WORLD_LOCAL_RANK:-0}"
                   export POCL_CACHE_DIR
               fi
               exec "$0"' "$prog"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: $np ranks (exit $rc)"
        exit 1
    fi
done
exit 0

#!/bin/sh
# mpi-faults.sh: one rank dying stops the whole run, and nothing is lost.
#  1. a 2-rank run writes a checkpoint (--stop_after_steps);
#  2. a 2-rank run resumes from it; one rank is killed with SIGKILL mid-run:
#     mpirun must exit non-zero within 30 s, the checkpoint must still load
#     and resume, with one rank (a different number of ranks) this time;
#  3. a bad flag value on every rank stops the run with one line naming it;
#  4. ranks given another --batch_size, --data_path or data set stop at
#     once with one line naming it (they used to hang in a collective).
# Needs mpirun and the Fashion-MNIST package; skipped without them.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
train="$top/cae-cl-train"
command -v mpirun > /dev/null 2>&1 || { echo "SKIP: no mpirun"; exit 77; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "SKIP: dataset-fashion-mnist not installed"; exit 77; }
cae_workdir faults
fail() {
    echo "FAIL: $*"
    exit 1
}
mpi="mpirun --allow-run-as-root --oversubscribe -np 2"
common="--input_size 16 --patch_size 4 --embed_dim 32 --depth 1 --num_heads 2
 --decoder_embed_dim 24 --regressor_depth 1 --decoder_depth 1 --decoder_num_heads 2
 --num_mask_patches 8 --min_mask_patches_per_block 2 --batch_size 4 --epochs 1
 --num_workers 1 --output_dir $work/out"

# 1. a checkpoint to come back to
$mpi "$train" $common --stop_after_steps 2 > "$work/1.log" 2>&1 || fail "first run: $(tail -5 "$work/1.log")"
ckpt="$work/out/checkpoint-0.safetensors"
[ -f "$ckpt" ] || fail "no checkpoint written"
sum=$(cksum < "$ckpt")

# 2. kill one rank mid-run
$mpi "$train" $common > "$work/2.log" 2>&1 &
mpirun_pid=$!
# wait until the resumed run trains (its metrics grow past the first run's 2 steps)
cae_wait_lines "$work/out/metrics.jsonl" 4
victim=$(pgrep -P $mpirun_pid -f cae-cl-train | tail -1)
[ -n "$victim" ] || fail "no rank process found under mpirun $mpirun_pid"
start=$(date +%s)
kill -KILL "$victim"
wait $mpirun_pid
rc=$?
elapsed=$(($(date +%s) - start))
[ $rc -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
[ $elapsed -le 30 ] || fail "mpirun took $elapsed s to stop"
[ "$(cksum < "$ckpt")" = "$sum" ] || fail "the checkpoint changed"
echo "ok: a killed rank stopped the run in ${elapsed}s (exit $rc); checkpoint intact"

# the checkpoint resumes, here on one rank
"$train" $common --stop_after_steps 3 > "$work/3.log" 2>&1 || fail "resume: $(tail -5 "$work/3.log")"
grep -q "resumed from .*checkpoint-0" "$work/3.log" || fail "did not resume: $(tail -5 "$work/3.log")"
echo "ok: resumed on a different number of ranks"

# 3. a bad value stops every rank with one line naming the flag
$mpi "$train" $common --mask_generator blocky > "$work/4.log" 2>&1 && fail "a bad flag value was accepted"
grep -q "mask_generator blocky" "$work/4.log" || fail "no message naming the flag: $(tail -5 "$work/4.log")"
echo "ok: a bad flag stops every rank"

# 4. ranks started with another --batch_size or other data stop before the
#    first step, with one line naming what differs, instead of hanging
/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/folders"
cae_time_limit 40
one="mpirun --allow-run-as-root --oversubscribe -np 1"
pre="" # a command rank 1's program runs under (env VAR=value)
differ() { # NAME LINE RANK0-FLAGS -- RANK1-FLAGS: the 2-rank run must stop with LINE
    name=$1 line=$2
    shift 2
    r0=""
    while [ "$1" != "--" ]; do r0="$r0 $1"; shift; done
    shift
    # shellcheck disable=SC2086
    $limit $one "$train" $common $r0 --output_dir "$work/$name" : -np 1 $pre "$train" $common "$@" \
        --output_dir "$work/$name" > "$work/$name.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $rc -lt 124 ] || fail "$name: exit status $rc: $(tail -5 "$work/$name.log")"
    grep -q "^cae-cl: rank 1: $line" "$work/$name.log" || fail "$name: no line '$line': $(tail -5 "$work/$name.log")"
    [ "$(grep -c "^cae-cl: " "$work/$name.log")" -eq 1 ] || fail "$name: more than one line: $(grep "^cae-cl: " "$work/$name.log")"
    echo "ok: $name stops every rank"
}
differ batch-size "--batch_size differs from rank 0's" --batch_size 4 -- --batch_size 2
differ data-path "--data_path differs from rank 0's" --data_path "$work/folders/train" -- \
    --data_path "$work/folders/val"
# the same flags, but rank 1 reads Fashion-MNIST from another folder
mkdir "$work/fmnist"
ln -s /usr/share/datasets/fashion-mnist/*.gz "$work/fmnist/"
pre="env CAE_FASHION_MNIST_DIR=$work/fmnist"
differ data-set "the data set differs from rank 0's" --

#!/bin/sh
# resource-errors.sh: what the machine cannot give is said in one line, with
# a non-zero exit and nothing half-written:
#   an unavailable device index, a missing OpenCL driver (ICD), an output
#   folder that cannot be created, a model too big for the device, and a
#   full disk (a file-size limit) while a checkpoint is written.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
train="$top/cae-cl-train"
cae_workdir res
fail() {
    echo "FAIL: $*"
    exit 1
}
tiny="--data_path $top_srcdir/tests/data/images/folder --input_size 16 --patch_size 4 --embed_dim 32
 --depth 1 --num_heads 2 --decoder_embed_dim 24 --regressor_depth 1 --decoder_depth 1
 --decoder_num_heads 2 --num_mask_patches 8 --min_mask_patches_per_block 2 --batch_size 2
 --epochs 1 --num_workers 1"

# expect NAME PATTERN CMD...: non-zero exit (< 128: no crash), PATTERN in
# exactly the cae-cl lines of the output
expect() {
    name=$1
    pattern=$2
    shift 2
    "$@" > "$work/$name.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] || fail "$name: exit 0"
    [ $rc -lt 128 ] || fail "$name: killed by a signal (exit $rc)"
    grep "^cae-cl:" "$work/$name.log" | grep -q -e "$pattern" ||
        fail "$name: no line matching '$pattern': $(tail -3 "$work/$name.log")"
    echo "ok: $name: $(grep '^cae-cl:' "$work/$name.log" | head -1)"
}

expect device-index "no OpenCL device matches" env CAE_CL_DEVICE=99 "$train" $tiny --output_dir "$work/o1"
# a bad attention core is refused once, before any step
expect attention-core "CAE_CL_ATTENTION='bogus'" env CAE_CL_ATTENTION=bogus "$train" $tiny --output_dir "$work/o1a"
[ "$(grep -c '^cae-cl:' "$work/attention-core.log")" -eq 1 ] || fail "attention-core: more than one line"
expect missing-icd "no OpenCL platform found" env OCL_ICD_VENDORS="$work/no-vendors" "$train" $tiny --output_dir "$work/o2"
expect output-folder "--output_dir" "$train" $tiny --output_dir /proc/cae-cl-cannot-be-here
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    expect device-memory "needs .* MiB of device memory" "$train" --model cae_large_patch16_224_8k_vocab \
        --num_mask_patches 98 --batch_size 512 --num_workers 1 --output_dir "$work/o4"
fi

# full disk: a file-size limit below one checkpoint; the old checkpoint stays
mkdir -p "$work/o5"
"$train" $tiny --output_dir "$work/o5" --stop_after_steps 2 > "$work/o5.log" 2>&1 || fail "setup run failed"
sum=$(cksum < "$work/o5/checkpoint-0.safetensors")
(
    trap '' XFSZ
    ulimit -f 64
    exec "$train" $tiny --output_dir "$work/o5" --stop_after_steps 4
) > "$work/full.log" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "full disk: exit $rc"
grep -q "^cae-cl:" "$work/full.log" || fail "full disk: no message: $(tail -3 "$work/full.log")"
[ "$(cksum < "$work/o5/checkpoint-0.safetensors")" = "$sum" ] || fail "full disk: the old checkpoint changed"
ls "$work/o5" | grep -q "\.tmp\." && fail "full disk: a temporary file was left behind"
echo "ok: full disk: $(grep '^cae-cl:' "$work/full.log" | head -1)"

#!/bin/sh
# oclgrind-train.sh: one full training step of a tiny model (data loading,
# forward, loss, backward, AdamW with clipping, checkpoint) with every kernel
# run by oclgrind, out-of-bounds, data-race, uninitialized-read and API
# checks on; any report fails. GEMMs go through CLBlast so they are checked
# too (oclgrind runs no native kernels). Skipped without oclgrind.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
og=${OCLGRIND:-$(command -v oclgrind)}
[ -n "$og" ] || { echo "SKIP: oclgrind not installed"; exit 77; }
cae_workdir og
# oclgrind 21.10's uninitialized-value checker crashes on vector loads: the
# kernels that use them are built with their scalar loops here
CAE_CL_NO_CACHE=1 "$og" --data-races --uninitialized --check-api \
    --build-options "-DLAYERNORM_VEC=0 -DGELU_VEC=0" --log "$work/oclgrind.log" \
    "$top/cae-cl-train" --data_path "$top_srcdir/tests/data/images/folder" \
    --input_size 8 --patch_size 4 \
    --embed_dim 16 --depth 1 --num_heads 2 --decoder_embed_dim 12 --regressor_depth 1 \
    --decoder_depth 1 --decoder_num_heads 2 --num_mask_patches 2 --min_mask_patches_per_block 1 \
    --batch_size 2 --epochs 1 --num_workers 0 --stop_after_steps 1 --clip_grad 0.5 \
    --gemm clblast --output_dir "$work/out" > "$work/run.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    echo "FAIL: the step under oclgrind exited $rc"
    tail -5 "$work/run.log"
    exit 1
fi
if [ -s "$work/oclgrind.log" ]; then
    echo "FAIL: oclgrind reported:"
    head -40 "$work/oclgrind.log"
    exit 1
fi
[ -f "$work/out/checkpoint-0.safetensors" ] || { echo "FAIL: no checkpoint"; exit 1; }
echo "ok: a full training step under oclgrind, no reports"

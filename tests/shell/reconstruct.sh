#!/bin/sh
# reconstruct.sh: the reconstruction pictures of cae-cl-train and
# cae-cl-reconstruct, end to end on a tiny ImageFolder (make-png-folder.py).
#  1. a run with a checkpoint every epoch writes reconstruction-<epoch>.png
#     beside each, from the val folder beside --data_path;
#  2. its losses equal those of the same run with the pictures off
#     (CAE_NO_RECONSTRUCTION=1, which writes none): drawing does not touch
#     training;
#  3. cae-cl-reconstruct on the last checkpoint draws the same file, byte
#     for byte, and another --seed draws another picture;
#  4. a DALL-E-target model is refused: no pixel decoder;
#  5. a picture that cannot be written is a warning naming it: training
#     goes on.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_workdir recon
fail() {
    echo "FAIL: $*"
    exit 1
}
/usr/bin/python3 "$top_srcdir/tests/shell/make-png-folder.py" "$work/data" 16 4 ||
    fail "could not make the image folder"
common="--data_path $work/data/train --input_size 32 --patch_size 8 --embed_dim 32 --depth 1
 --num_heads 2 --decoder_embed_dim 24 --regressor_depth 1 --decoder_depth 1 --decoder_num_heads 2
 --num_mask_patches 8 --min_mask_patches_per_block 2 --batch_size 8 --epochs 3 --save_ckpt_freq 1
 --num_workers 2 --seed 3 --warmup_steps 2 --lr 1e-3"
losses() { # "step loss loss_main loss_align" per line of a metrics.jsonl
    sed -E 's/.*"step": ([0-9]+),.*"loss": ([^,]+), "loss_main": ([^,]+), "loss_align": ([^,]+),.*/\1 \2 \3 \4/' "$1"
}

# 1. a picture per checkpoint
"$top/cae-cl-train" $common --output_dir "$work/a" > "$work/a.log" 2>&1 ||
    fail "training: $(tail -3 "$work/a.log")"
for e in 0 1 2; do
    [ -s "$work/a/reconstruction-$e.png" ] || fail "no reconstruction-$e.png: $(ls "$work/a")"
done
grep -q "8 images of the val folder beside --data_path" "$work/a.log" ||
    fail "the held-out images are not named: $(grep reconstruction "$work/a.log")"
echo "ok: a picture at each of 3 checkpoints"

# 2. the same losses without the pictures
CAE_NO_RECONSTRUCTION=1 "$top/cae-cl-train" $common --output_dir "$work/b" > "$work/b.log" 2>&1 ||
    fail "training without pictures: $(tail -3 "$work/b.log")"
ls "$work/b"/reconstruction-*.png > /dev/null 2>&1 && fail "CAE_NO_RECONSTRUCTION=1 drew a picture"
losses "$work/a/metrics.jsonl" > "$work/a.loss"
losses "$work/b/metrics.jsonl" > "$work/b.loss"
[ "$(wc -l < "$work/a.loss")" -eq 12 ] || fail "expected 12 steps, got $(wc -l < "$work/a.loss")"
cmp -s "$work/a.loss" "$work/b.loss" || {
    paste "$work/a.loss" "$work/b.loss"
    fail "the pictures changed the training losses"
}
echo "ok: 12 steps, the same losses with and without the pictures"

# 3. cae-cl-reconstruct draws the training run's picture
"$top/cae-cl-reconstruct" --finetune "$work/a/checkpoint-2.safetensors" --out "$work/r.png" \
    > "$work/r.log" 2>&1 || fail "cae-cl-reconstruct: $(tail -3 "$work/r.log")"
cmp -s "$work/r.png" "$work/a/reconstruction-2.png" ||
    fail "cae-cl-reconstruct's picture differs from the training run's"
"$top/cae-cl-reconstruct" --finetune "$work/a/checkpoint-2.safetensors" --out "$work/s.png" \
    --seed 11 --mask_generator random > "$work/s.log" 2>&1 ||
    fail "cae-cl-reconstruct --seed 11: $(tail -3 "$work/s.log")"
cmp -s "$work/s.png" "$work/r.png" && fail "another --seed drew the same masks"
echo "ok: cae-cl-reconstruct draws the same picture from the checkpoint"

# 4. no pixel decoder
"$top/cae-cl-reconstruct" --finetune "$work/a/checkpoint-2.safetensors" --out "$work/d.png" \
    --discrete_vae_type dall-e > "$work/d.log" 2>&1 && fail "a DALL-E target was accepted"
grep -q "no pixel decoder" "$work/d.log" || fail "DALL-E target: $(cat "$work/d.log")"
[ -e "$work/d.png" ] && fail "a picture was written for a DALL-E target"
echo "ok: a DALL-E target is refused"

# 5. a folder where the picture goes
mkdir -p "$work/c/reconstruction-0.png"
"$top/cae-cl-train" $common --epochs 1 --output_dir "$work/c" > "$work/c.log" 2>&1 ||
    fail "an unwritable picture stopped training: $(tail -3 "$work/c.log")"
grep -q "warning: no $work/c/reconstruction-0.png" "$work/c.log" ||
    fail "no warning naming the picture: $(tail -3 "$work/c.log")"
[ -f "$work/c/checkpoint-0.safetensors" ] || fail "no checkpoint beside the failed picture"
echo "ok: a picture that cannot be written is a warning"
exit 0

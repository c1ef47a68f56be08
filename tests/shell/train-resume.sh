#!/bin/sh
# train-resume.sh: cae-cl-train's checkpoints resume exactly.
#  1. 6 steps in one run, and 3 steps + resume + 3 steps, log identical
#     losses at every step (same device, same GEMM back end);
#  2. SIGTERM finishes the step, writes a checkpoint and exits 143, and the
#     run resumes from it;
#  3. a non-finite loss stops the run with a message naming the step, and
#     leaves the last checkpoint as it was;
#  4. a second run on an output folder in use is refused at once.
# Needs the Fashion-MNIST package (dataset-fashion-mnist); skipped without.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
train="$top/cae-cl-train"
fmnist=${CAE_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: $fmnist not installed (apt-get install dataset-fashion-mnist)"
    exit 77
fi
cae_workdir resume
fail() {
    echo "FAIL: $*"
    exit 1
}
# a tiny model so each step takes milliseconds
common="--input_size 16 --patch_size 4 --embed_dim 32 --depth 1 --num_heads 2
 --decoder_embed_dim 24 --regressor_depth 1 --decoder_depth 1 --decoder_num_heads 2
 --num_mask_patches 8 --min_mask_patches_per_block 2 --batch_size 8 --epochs 1
 --num_workers 2 --seed 3 --warmup_steps 2 --lr 1e-3 --drop_path 0.1"

losses() { # "step loss" per line of a metrics.jsonl
    sed -E 's/.*"step": ([0-9]+),.*"loss": ([^,]+),.*/\1 \2/' "$1"
}

# 1. resume gives the same losses as an uninterrupted run
"$train" $common --output_dir "$work/a" --stop_after_steps 6 > "$work/a.log" 2>&1 ||
    fail "uninterrupted run: $(tail -3 "$work/a.log")"
"$train" $common --output_dir "$work/b" --stop_after_steps 3 > "$work/b1.log" 2>&1 ||
    fail "first half: $(tail -3 "$work/b1.log")"
ls "$work/b"/checkpoint-*.safetensors > /dev/null 2>&1 || fail "no checkpoint after --stop_after_steps"
"$train" $common --output_dir "$work/b" --stop_after_steps 6 > "$work/b2.log" 2>&1 ||
    fail "resumed half: $(tail -3 "$work/b2.log")"
grep -q "resumed from" "$work/b2.log" || fail "the second run did not resume"
losses "$work/a/metrics.jsonl" > "$work/a.loss"
losses "$work/b/metrics.jsonl" > "$work/b.loss"
[ "$(wc -l < "$work/a.loss")" -eq 6 ] || fail "expected 6 steps, got $(wc -l < "$work/a.loss")"
cmp -s "$work/a.loss" "$work/b.loss" || {
    paste "$work/a.loss" "$work/b.loss"
    fail "resumed losses differ from the uninterrupted run"
}
echo "ok: 3 + resume + 3 steps equal 6 steps"

# 2. SIGTERM: finish the step, checkpoint, exit 143, resumable
"$train" $common --output_dir "$work/c" > "$work/c.log" 2>&1 &
pid=$!
cae_wait_lines "$work/c/metrics.jsonl" 2
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "SIGTERM: exit status $rc, expected 143: $(tail -3 "$work/c.log")"
grep -q "stopped by signal" "$work/c.log" || fail "SIGTERM: no message"
steps=$(wc -l < "$work/c/metrics.jsonl")
"$train" $common --output_dir "$work/c" --stop_after_steps $((steps + 1)) > "$work/c2.log" 2>&1 ||
    fail "resume after SIGTERM: $(tail -3 "$work/c2.log")"
grep -q "resumed from" "$work/c2.log" || fail "no resume after SIGTERM"
echo "ok: SIGTERM checkpoint resumes"

# 3. a non-finite loss stops the run; the checkpoint stays intact
cp -r "$work/a" "$work/d"
sum_before=$(cksum "$work/d"/checkpoint-*.safetensors)
"$train" $common --output_dir "$work/d" --lr 1e30 --clip_grad 0 --warmup_steps 0 \
    --stop_after_steps 40 > "$work/d.log" 2>&1
rc=$?
[ $rc -ne 0 ] || fail "a diverging run exited 0"
grep -q "non-finite loss at step" "$work/d.log" || fail "no non-finite loss message: $(tail -3 "$work/d.log")"
[ "$(cksum "$work/d"/checkpoint-*.safetensors)" = "$sum_before" ] || fail "checkpoint changed"
echo "ok: non-finite loss stops the run"

# 4. one run per output folder: a second run on a folder in use fails at
#    once, naming the folder and the first run's pid; the first one goes on
"$train" $common --output_dir "$work/e" --stop_after_steps 400 > "$work/e.log" 2>&1 &
pid=$!
cae_wait_lines "$work/e/metrics.jsonl" 1
cae_time_limit 60
$limit "$train" $common --output_dir "$work/e" > "$work/e2.log" 2>&1
rc=$?
kill -0 $pid 2>/dev/null || fail "the first run ended before the second was tried: $(tail -3 "$work/e.log")"
[ $rc -ne 0 ] && [ $rc -lt 124 ] || fail "a second run on a folder in use: exit status $rc"
grep "^cae-cl: " "$work/e2.log" | grep -F "$work/e" | grep -q "pid $pid" ||
    fail "second run: no line naming the folder and pid $pid: $(tail -3 "$work/e2.log")"
[ "$(grep -c "^cae-cl: " "$work/e2.log")" -eq 1 ] || fail "second run: more than one 'cae-cl: ' line"
wait $pid || fail "the first run failed: $(tail -3 "$work/e.log")"
[ "$(wc -l < "$work/e/metrics.jsonl")" -eq 400 ] || fail "metrics.jsonl: $(wc -l < "$work/e/metrics.jsonl") lines, expected 400"
[ "$(grep -c '"epoch"' "$work/e/log.txt")" -le 1 ] || fail "log.txt has lines of two runs"
echo "ok: a second run on a folder in use is refused"

# 5. another batch size resumes by epoch, as the official code does: 2
#    epochs at batch 4, then on to 3 at batch 2, trains epoch 2 alone, and
#    its first step's lr is a fresh batch-2 run's at epoch 2's first step
/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/folder"
byepoch="$common --data_path $work/folder/train --warmup_steps 0 --warmup_epochs 1"
"$train" $byepoch --batch_size 4 --epochs 2 --output_dir "$work/f" > "$work/f1.log" 2>&1 ||
    fail "2 epochs at batch 4: $(tail -3 "$work/f1.log")"
"$train" $byepoch --batch_size 2 --epochs 3 --output_dir "$work/f" > "$work/f2.log" 2>&1 ||
    fail "resumed at batch 2: $(tail -3 "$work/f2.log")"
epochs=$(sed -E 's/.*"epoch": ([0-9]+),.*/\1/' "$work/f/log.txt" | tr '\n' ' ')
[ "$epochs" = "0 1 2 " ] || fail "log.txt has epochs '$epochs', expected '0 1 2 '"
per_epoch=$((192 / 2))
"$train" $byepoch --batch_size 2 --epochs 3 --output_dir "$work/g" \
    --stop_after_steps $((2 * per_epoch + 1)) > "$work/g.log" 2>&1 ||
    fail "fresh run at batch 2: $(tail -3 "$work/g.log")"
lr_of() { # the lr of metrics.jsonl's line for step $2
    grep "^{\"step\": $2," "$1" | sed -E 's/.*"lr": ([^,]+),.*/\1/'
}
resumed_lr=$(lr_of "$work/f/metrics.jsonl" $((2 * per_epoch)))
fresh_lr=$(lr_of "$work/g/metrics.jsonl" $((2 * per_epoch)))
[ -n "$fresh_lr" ] && [ "$resumed_lr" = "$fresh_lr" ] ||
    fail "lr at epoch 2's first step: resumed '$resumed_lr', fresh '$fresh_lr'"
echo "ok: another batch size resumes by epoch"

#!/bin/sh
# attentive-probe.sh: cae-cl-attentive end to end on the small separable
# synthetic ImageFolder of tests/shell/make-probe-data.py (3 classes by colour and
# stripes): an attentive probe on a fixed random encoder (tiny model) must
# reach at least 90% top-1 on the val split; the logs must have the official
# fields; the checkpoint holds the official keys; --eval of the saved head
# gives the last epoch's accuracy again; --resume continues at the next
# epoch; the augmented path and the pre-norm tokens (--use_mean_pooling)
# run; a bad --opt is refused with one line.
set -eu
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_workdir attentive

/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/data"
tiny="--data_path $work/data --finetune random --input_size 32 --patch_size 8 --embed_dim 32
      --depth 2 --num_heads 2 --decoder_embed_dim 32 --decoder_num_heads 2 --num_mask_patches 8
      --batch_size 32 --seed 1"

# shellcheck disable=SC2086
"$top/cae-cl-attentive" $tiny --output_dir "$work/out" --epochs 6 --warmup_epochs 1 --blr 1 \
    --cache_features > "$work/stdout" 2>&1 || { cat "$work/stdout"; exit 1; }
cat "$work/stdout"
grep -q 'features: all tokens (cls + patches) of the final norm' "$work/stdout"
grep -q 'SGD (Nesterov, momentum 0.9, weight decay 0)' "$work/stdout"
for f in test_acc1 test_acc5 test_loss train_loss train_lr epoch n_parameters; do
    grep -q "\"$f\"" "$work/out/log.txt" || { echo "log.txt lacks $f"; exit 1; }
done
test "$(grep -c test_acc1 "$work/out/metrics.jsonl")" -eq 6
best=$(sed -n 's/.*"max_accuracy": \([0-9.]*\).*/\1/p' "$work/out/log.txt")
echo "best top-1: $best"
awk -v b="$best" 'BEGIN { exit !(b >= 90) }' || { echo "attentive probe reached only $best%"; exit 1; }

# the official keys of the trainable part
ckpt="$work/out/checkpoint-attentive.safetensors"
for k in query_token attentive_blocks.0.norm1_q.weight attentive_blocks.0.norm1_k.bias \
    attentive_blocks.0.norm1_v.weight attentive_blocks.0.cross_attn.q_bias \
    attentive_blocks.0.cross_attn.v_bias attentive_blocks.0.cross_attn.k.weight \
    attentive_blocks.0.cross_attn.proj.bias fc_norm.running_mean fc_norm.running_var \
    head.weight head.bias; do
    grep -q "\"$k\"" "$ckpt" || { echo "checkpoint lacks $k"; exit 1; }
done

# --eval: the saved head (last epoch) gives the last epoch's accuracy again
# shellcheck disable=SC2086
"$top/cae-cl-attentive" $tiny --output_dir "$work/out_eval" --eval --resume "$ckpt" \
    > "$work/stdout_eval" 2>&1 || { cat "$work/stdout_eval"; exit 1; }
last=$(grep '"epoch": 5' "$work/out/log.txt" | sed 's/.*"test_loss": \([0-9.e+-]*\),.*/\1/')
again=$(sed 's/.*"test_loss": \([0-9.e+-]*\),.*/\1/' "$work/out_eval/log.txt")
echo "last epoch test_loss $last, --eval test_loss $again"
test -n "$last" && test "$last" = "$again"

# --resume: the next epochs only
cp "$ckpt" "$work/resume.safetensors"
# shellcheck disable=SC2086
"$top/cae-cl-attentive" $tiny --output_dir "$work/out_resume" --epochs 8 --warmup_epochs 1 \
    --blr 1 --cache_features --resume "$work/resume.safetensors" > "$work/stdout_resume" 2>&1 ||
    { cat "$work/stdout_resume"; exit 1; }
grep -q 'resumed from .*: next epoch 6' "$work/stdout_resume"
test "$(grep -c '"test_acc1"' "$work/out_resume/log.txt")" -eq 2
grep -q '"epoch": 6,' "$work/out_resume/log.txt"
grep -q '"epoch": 7,' "$work/out_resume/log.txt"

# augmented images through the encoder every step; the tokens before the final norm
# shellcheck disable=SC2086
"$top/cae-cl-attentive" $tiny --output_dir "$work/out2" --epochs 2 --warmup_epochs 1 --blr 1 \
    --use_mean_pooling --opt momentum > "$work/stdout2" 2>&1 || { cat "$work/stdout2"; exit 1; }
test "$(grep -c test_acc1 "$work/out2/log.txt")" -eq 2
grep -q 'before the final norm' "$work/stdout2"
grep -q 'SGD (plain' "$work/stdout2"

# a bad --opt is refused with one line, before anything is written
# shellcheck disable=SC2086
if "$top/cae-cl-attentive" $tiny --output_dir "$work/out3" --opt adamw > "$work/err" 2>&1; then
    echo "--opt adamw accepted"; exit 1
fi
test "$(wc -l < "$work/err")" -eq 1
grep -q -- '--opt adamw' "$work/err"
test ! -e "$work/out3"
echo "attentive-probe: ok"

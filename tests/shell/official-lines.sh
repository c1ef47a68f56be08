#!/bin/sh
# official-lines.sh: the probing and fine-tuning command lines of the
# official scripts/cae_base_800e.sh and scripts/cae_base_finetune.sh, with
# `python -m torch.distributed.launch ... tools/run_X.py` replaced by the
# cae-cl program and the paths by a small synthetic ImageFolder
# (tests/shell/make-probe-data.py) and a random encoder, run unchanged; a
# tiny model and one epoch are appended at the end (later flags win). Each
# must run to its last epoch. Then official flags at values cae-cl does not
# implement must be refused with one line naming the flag.
# shellcheck disable=SC2086 # the official lines leave their paths unquoted
set -eu
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_workdir official-lines

/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/data"
DATA_PATH=$work/data
MODEL_PATH=random
my_name=official-lines
tiny="--input_size 32 --patch_size 8 --embed_dim 32 --depth 2 --num_heads 2
      --decoder_embed_dim 32 --decoder_num_heads 2 --num_mask_patches 8
      --batch_size 32 --epochs 1 --warmup_epochs 0"

# official NAME PROGRAM FLAGS...: runs PROGRAM FLAGS $tiny, which must reach
# its summary line, log its one epoch and write a checkpoint in $work/NAME
official() {
    name=$1 prog=$2
    shift 2
    "$top/$prog" "$@" $tiny > "$work/$name.txt" 2>&1 || { cat "$work/$name.txt"; exit 1; }
    cat "$work/$name.txt"
    grep -q '^Max accuracy' "$work/$name.txt" || { echo "$name: no summary line"; exit 1; }
    test "$(grep -c test_acc1 "$work/$name/metrics.jsonl")" -eq 1
    ls "$work/$name"/checkpoint-*.safetensors
}

OUTPUT_DIR=$work/linear # scripts/cae_base_800e.sh: linear probing
official linear cae-cl-linear \
    --model cae_base_patch16_224 --data_path $DATA_PATH \
    --finetune $MODEL_PATH \
    --nb_classes 1000 \
    --batch_size 512 \
    --epochs 90 \
    --blr 0.1 \
    --weight_decay 0.0 \
    --dist_eval --data_path ${DATA_PATH} \
    --output_dir $OUTPUT_DIR \
    --log_dir $OUTPUT_DIR \
    --enable_linear_eval \
    --use_cls \
    --dist_eval \
    --save_freq 50 \
    --disable_rel_pos_bias \
    --linear_type standard \
    --exp_name $my_name

OUTPUT_DIR=$work/attentive # scripts/cae_base_800e.sh: attentive probing
official attentive cae-cl-attentive \
    --model cae_base_patch16_224 --data_path $DATA_PATH \
    --finetune $MODEL_PATH \
    --nb_classes 1000 --data_set IMNET --imagenet_default_mean_and_std \
    --output_dir $OUTPUT_DIR --batch_size 256 --lr 0.4 --update_freq 1 \
    --warmup_epochs 10 --epochs 90 \
    --weight_decay 0 --smoothing 0.0 --layer_decay 1.0 --drop_path 0.0 \
    --color_jitter 0.0 --mixup 0.0 --cutmix 0.0 --reprob 0.0 \
    --opt sgd --momentum 0.9 \
    --enable_linear_eval \
    --use_cls \
    --dist_eval \
    --no_auto_resume \
    --save_ckpt_freq 50 \
    --linear_type attentive \
    --exp_name $my_name

OUTPUT_DIR=$work/finetune # scripts/cae_base_finetune.sh
official finetune cae-cl-finetune \
    --model cae_base_patch16_224  --data_path $DATA_PATH \
    --finetune $MODEL_PATH \
    --nb_classes 1000 --data_set IMNET \
    --output_dir $OUTPUT_DIR \
    --batch_size 128 \
    --lr 8e-3 --update_freq 1 \
    --warmup_epochs 5 --epochs 100 --layer_decay 0.65 --drop_path 0.1 \
    --weight_decay 0.05 --mixup 0.8 --cutmix 1.0 \
	--sin_pos_emb \
    --dist_eval \
    --no_auto_resume \
    --exp_name $my_name \
    --imagenet_default_mean_and_std

# the launcher's flags are accepted and say so in --help
"$top/cae-cl-linear" --device cuda --dist_url env:// --local_rank 0 --world_size 8 --pin_mem \
    --no_pin_mem --dist_on_itp --help > "$work/help.txt"
for f in device dist_url local_rank world_size pin_mem dist_on_itp; do
    grep -- "--$f " "$work/help.txt" | grep -q 'no effect' || { echo "--help: --$f"; exit 1; }
done

# refused: one line naming the flag, a non-zero exit, before anything runs
refused() {
    prog=$1 flag=$2
    shift 2
    if "$top/$prog" --data_path "$DATA_PATH" --finetune random --output_dir "$work/refused" \
        "$@" > "$work/refused.txt" 2>&1; then
        echo "$prog $*: accepted"
        exit 1
    fi
    test "$(wc -l < "$work/refused.txt")" -eq 1 && grep -q -- "--$flag" "$work/refused.txt" ||
        { echo "$prog $*: not one line naming --$flag:"; cat "$work/refused.txt"; exit 1; }
    test ! -e "$work/refused"
}
refused cae-cl-linear linear_type --linear_type attentive
refused cae-cl-attentive linear_type --linear_type standard
refused cae-cl-finetune linear_type --linear_type standard
refused cae-cl-finetune enable_linear_eval --enable_linear_eval
refused cae-cl-attentive save_freq --save_freq 50
refused cae-cl-attentive update_freq --update_freq 2
refused cae-cl-finetune update_freq --update_freq=4
refused cae-cl-linear accum_iter --accum_iter 2
refused cae-cl-finetune data_set --data_set CIFAR
refused cae-cl-attentive data_set --data_set image_folder
refused cae-cl-finetune eval_data_path --eval_data_path "$DATA_PATH/val"
refused cae-cl-finetune enable_deepspeed --enable_deepspeed
refused cae-cl-finetune model_ema --model_ema
refused cae-cl-finetune drop --drop 0.1
refused cae-cl-attentive attn_drop_rate --attn_drop_rate 0.1
refused cae-cl-finetune crop_pct --crop_pct 0.9
refused cae-cl-finetune remode --remode const
refused cae-cl-finetune recount --recount 2
refused cae-cl-finetune resplit --resplit
refused cae-cl-finetune model_key --model_key model
refused cae-cl-finetune model_prefix --model_prefix encoder.
refused cae-cl-finetune disable_sin_pos_emb --disable_sin_pos_emb
refused cae-cl-finetune disable_eval_during_finetuning --disable_eval_during_finetuning
refused cae-cl-finetune no_save_ckpt --no_save_ckpt
refused cae-cl-finetune disable_weight_decay_on_rel_pos_bias --disable_weight_decay_on_rel_pos_bias
if "$top/cae-cl-linear" --data_set IMNET > "$work/refused.txt" 2>&1; then
    echo "--data_set without --data_path: accepted"
    exit 1
fi
grep -q -- '--data_set IMNET needs --data_path' "$work/refused.txt"

# the same flags at cae-cl's values are accepted (parsed, then --help)
"$top/cae-cl-finetune" --update_freq 1 --accum_iter 1 --drop 0.0 --attn_drop_rate 0 \
    --crop_pct 0.875 --remode pixel --recount 1 --model_key 'model|module|state_dict' \
    --model_prefix '' --save_ckpt --model_ema_decay 0.9999 --model_ema_force_cpu \
    --data_set IMNET --data_path "$DATA_PATH" --help > /dev/null
echo "official-lines: ok"

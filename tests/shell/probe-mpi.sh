#!/bin/sh
# probe-mpi.sh: cae-cl-linear and cae-cl-attentive under mpirun with 2 ranks
# against 1 rank with the same global batch (32 = 2 x 16), on the synthetic
# ImageFolder of tests/shell/make-probe-data.py: the same lr (blr scaled by the
# global batch), the same steps per epoch, the same top-1 every epoch
# (BatchNorm sees each rank's own half-batch, as the official DDP runs, so
# losses differ slightly), one log and one checkpoint (rank 0's), and
# --dist_eval (each rank evaluates half of the val batches) counts every
# val image once.
set -eu
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_need_mpirun 600 # a rank stuck in a collective must not hang make check
cae_workdir probe-mpi
/usr/bin/python3 "$top_srcdir/tests/shell/make-probe-data.py" "$work/data"
tiny="--data_path $work/data --finetune random --input_size 32 --patch_size 8 --embed_dim 32
      --depth 2 --num_heads 2 --decoder_embed_dim 32 --decoder_num_heads 2 --num_mask_patches 8
      --seed 1 --cache_features --epochs 6 --warmup_epochs 1"

acc1() { sed -n 's/.*"test_acc1": \([0-9.]*\).*"epoch": \([0-9]*\).*/\2 \1/p' "$1"; }

for probe in linear attentive; do
    case $probe in
    linear) blr=50 ;;
    attentive) blr=1 ;;
    esac
    # shellcheck disable=SC2086
    "$top/cae-cl-$probe" $tiny --blr $blr --batch_size 32 --output_dir "$work/$probe-1" \
        > "$work/$probe-1.log" 2>&1 || { cat "$work/$probe-1.log"; exit 1; }
    # shellcheck disable=SC2086
    $limit mpirun --allow-run-as-root --oversubscribe -np 2 "$top/cae-cl-$probe" $tiny \
        --blr $blr --batch_size 16 --dist_eval --output_dir "$work/$probe-2" \
        > "$work/$probe-2.log" 2>&1 || { cat "$work/$probe-2.log"; exit 1; }
    cat "$work/$probe-2.log"
    grep -q 'ranks: 2, batch 16 per rank, 32 global, evaluation sharded' "$work/$probe-2.log"
    l1=$(grep '^lr ' "$work/$probe-1.log")
    l2=$(grep '^lr ' "$work/$probe-2.log")
    test "$l1" = "$l2" || { echo "$probe: '$l1' vs '$l2'"; exit 1; }
    # one writer: one log line per epoch, every val image counted once
    test "$(grep -c '"test_acc1"' "$work/$probe-2/log.txt")" -eq 6
    test "$(grep -c '^epoch .* on 96 images' "$work/$probe-2.log")" -eq 6
    test -f "$work/$probe-2/checkpoint-$probe.safetensors"
    a1=$(acc1 "$work/$probe-1/log.txt")
    a2=$(acc1 "$work/$probe-2/log.txt")
    echo "$probe top-1 per epoch, 1 rank: $(echo $a1) | 2 ranks: $(echo $a2)"
    test -n "$a1" && test "$a1" = "$a2"
done
echo "probe-mpi: ok"

#!/bin/sh
# soak.sh: a tiny model trained for 30 s on the test image folder; resident
# memory and open descriptors must not grow after the first epoch.
src=${CAE_TOP_SRCDIR:-.}
top=${CAE_TOP_BUILDDIR:-.}
CAE_CL_TRAIN="$top/cae-cl-train" exec sh "$top/cae-cl-soak" 30 \
    --data_path "$src/tests/data/images/folder" --input_size 16 --patch_size 4 --embed_dim 32 \
    --depth 1 --num_heads 2 --decoder_embed_dim 24 --regressor_depth 1 --decoder_depth 1 \
    --decoder_num_heads 2 --num_mask_patches 8 --min_mask_patches_per_block 2 --batch_size 2 \
    --epochs 100000 --save_ckpt_freq 50 --num_workers 2

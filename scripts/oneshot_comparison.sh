#!/usr/bin/env bash
# Issue 6's comparison (NOTES.md "Issue 6"): the default pipeline's stages and budget, but a one-shot magnitude
# student instead of the prune-once one. Needs a finished `make demo` (its teacher). Usage: scripts/oneshot_comparison.sh
set -euo pipefail
P=.venv/bin/pruneofa
O=runs/oneshot
D="--task_name rotten_tomatoes --max_seq_length 128 --batch_size 32 --seed 5143 --max_train_samples 3000"
KD="--teacher_model_name_or_path runs/demo/teacher --do_prune --do_distillation --loss_weights 0 1 --temperature 2"
$P sparsify minilm-l6 --sparsity 0.9 --method magnitude --text_file rotten_tomatoes --output_dir $O/student
$P train $D $KD --model_name_or_path $O/student --learning_rate 1e-4 --num_train_epochs 3 --output_dir $O/stage1
$P train $D $KD --model_name_or_path $O/student --learning_rate 1e-5 --num_train_epochs 1 --do_quantization \
   --resume $O/stage1 --pad_to_max_length --output_dir $O/stage2

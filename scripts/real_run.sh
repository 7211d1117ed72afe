#!/usr/bin/env bash
# The issue-2 proof run (NOTES.md "Issue 2"): full rotten_tomatoes, packaged MiniLM, the seed's flags with fewer
# epochs, then the exports and the bench of issues 4 and 5. Usage: scripts/real_run.sh [RUN_DIR]
set -euo pipefail
P=.venv/bin/pruneofa
R=${1:-runs/real}
D="--task_name rotten_tomatoes --max_seq_length 128 --batch_size 32 --seed 5143"
KD="--teacher_model_name_or_path $R/teacher --do_prune --do_distillation --loss_weights 0 1 --temperature 2"
$P train $D --model_name_or_path minilm-l6 --learning_rate 5e-5 --num_train_epochs 2 --output_dir $R/teacher
$P sparsify minilm-l6 --sparsity 0.9 --output_dir $R/student
$P train $D $KD --model_name_or_path $R/student --learning_rate 1e-4 --num_train_epochs 2 --output_dir $R/stage1
$P train $D $KD --model_name_or_path $R/student --learning_rate 1e-5 --num_train_epochs 1 --do_quantization \
   --resume $R/stage1/best_model.pt --pad_to_max_length --output_dir $R/stage2
$P export $R/stage2 --output_dir $R/export-int8
$P export $R/teacher --output_dir $R/export-fp32
$P bench $R/export-int8 --baseline $R/export-fp32 --output_dir $R/bench --duration 6 --iterations 150

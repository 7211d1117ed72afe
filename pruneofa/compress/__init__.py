"""Compression: the sparsity pattern lock, pruners (one-shot, prune-once), int8 QAT, distillation losses."""

"""Benchmarking: engines timed side by side, interleaved -> a result document, its report and plot. No pass/fail."""

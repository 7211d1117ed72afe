"""pruneofa: Prune Once For All fine-tuning, sparse-int8 export and benchmarking."""

__version__ = "0.1.0"

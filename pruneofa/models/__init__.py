"""Models: resolve and load students, teachers and tokenizers; the atomic model folder with its pruneofa.json."""

"""The whole flow from one recipe: fingerprinted steps (train, sparsify, export, bench, gate), state and report."""

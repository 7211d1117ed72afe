"""Shared core, imported by every stage: errors, atomic files, sha256, hardware facts, versions, Hub probe.

No heavy imports here: the torch-free runtime uses it."""

"""Training: one stage read top to bottom, its inputs and resumable state, the process-group runtime, dev eval."""

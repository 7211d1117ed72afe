"""Data: the GLUE task table, the built-in offline task, files / Hub -> validated tokenized splits, metrics."""

"""The CLI commands, one module per stage of the flow; `pruneofa.cli` wires them into the app."""

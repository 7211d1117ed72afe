"""The one exception type a user can cause. The CLI prints its message as a single line and exits non-zero."""


class PruneofaError(Exception):
    """A problem with the user's input: the message names the input, what is wrong and how to fix it."""


class DataError(PruneofaError):
    """A data file or row that cannot be used."""


class ModelError(PruneofaError):
    """A model, tokenizer or checkpoint that cannot be used."""


class PatternBrokenError(PruneofaError):
    """The sparsity pattern changed during training: a pruned weight became non-zero."""

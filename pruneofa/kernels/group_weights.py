"""Sparse int8 weights in the kernel's "K-group" form (native/include/pruneofa_sparse.h).

K is cut into groups of 4 consecutive input features (what one VNNI lane multiplies); each output row keeps its
non-empty groups: `row_ptr` [N + 1] indexes `groups` (group numbers, uint16) and `values` (the group's 4 int8
weights as one little-endian int32). Bytes: 6 per non-empty group, ~0.5 byte per weight at 90% random sparsity
against 1 for dense int8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_COLS = 4 * 65536  # group numbers are uint16


@dataclass(frozen=True)
class GroupWeights:
    rows: int
    cols: int
    row_ptr: np.ndarray  # int32 [rows + 1]
    groups: np.ndarray  # uint16 [G]
    values: np.ndarray  # int32 [G], 4 int8 each

    @property
    def nonempty_groups(self) -> int:
        return int(self.row_ptr[-1])

    @property
    def group_fill(self) -> float:
        """Fraction of all (row, group) slots that are non-empty: the kernel's work relative to dense int8."""
        total = self.rows * ((self.cols + 3) // 4)
        return self.nonempty_groups / total if total else 0.0

    def to_bytes(self) -> bytes:
        """The blob the OpenVINO op reads: row_ptr | values | groups."""
        return self.row_ptr.tobytes() + self.values.tobytes() + self.groups.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes, rows: int, cols: int) -> GroupWeights:
        row_ptr = np.frombuffer(blob, dtype=np.int32, count=rows + 1)
        count = int(row_ptr[-1])
        start = (rows + 1) * 4
        if len(blob) != start + 6 * count:
            raise ValueError(f"packed weights: {len(blob)} bytes, expected {start + 6 * count} for {rows}x{cols}")
        values = np.frombuffer(blob, dtype=np.int32, count=count, offset=start)
        groups = np.frombuffer(blob, dtype=np.uint16, count=count, offset=start + 4 * count)
        return cls(rows, cols, row_ptr, groups, values)

    def to_dense(self) -> np.ndarray:
        """The int8 [rows, cols] matrix back (tests and checks)."""
        padded = np.zeros((self.rows, (self.cols + 3) // 4, 4), dtype=np.int8)
        row_of = np.repeat(np.arange(self.rows), np.diff(self.row_ptr))
        padded[row_of, self.groups.astype(np.int64)] = self.values.view(np.int8).reshape(-1, 4)
        return padded.reshape(self.rows, -1)[:, : self.cols]


def pack_groups(weight: np.ndarray) -> GroupWeights:
    """An int8 [N, K] matrix (out features x in features, torch Linear layout) in K-group form."""
    if weight.ndim != 2 or weight.dtype != np.int8:
        raise ValueError(f"expected a 2-D int8 weight, got {weight.dtype} {weight.shape}")
    rows, cols = weight.shape
    if cols > MAX_COLS:
        raise ValueError(f"{cols} input features: the kernel's group numbers cover at most {MAX_COLS}")
    n_groups = (cols + 3) // 4
    padded = np.zeros((rows, n_groups * 4), dtype=np.int8)
    padded[:, :cols] = weight
    quads = np.ascontiguousarray(padded).view(np.int32).reshape(rows, n_groups)  # 4 int8 -> one int32, LE
    row_of, group_of = np.nonzero(quads)  # row-major: rows in order, groups ascending within a row
    row_ptr = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(row_of, minlength=rows), out=row_ptr[1:])
    return GroupWeights(
        rows, cols, row_ptr, group_of.astype(np.uint16), np.ascontiguousarray(quads[row_of, group_of], np.int32)
    )

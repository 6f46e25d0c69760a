"""Reference bins: THE bin-assignment function shared by the converter, the backend and the drift code.

The converter computes the reference proportions with ``assign_bins``, the serving backend counts live inputs
with it and the drift statistics compare the two, so all three agree exactly.

Bin indices for a feature with ``k`` regular bins (``k = len(bin_edges) + 1`` or ``len(categories) + 1``):

- numeric: ``0 .. k-1`` from ``numpy.searchsorted(bin_edges, x, side="left")`` (so ``x <= e1`` is bin 0),
  and ``k`` for NaN;
- categorical: the category's position in ``categories``, and ``len(categories)`` (= ``k-1``) for
  ``__other__`` (unseen values, None and NaN).

``bin_labels`` gives the metric label of each index (``"0".."k-1", "nan"`` or the category names and
``"__other__"``); ``reference_proportions`` the reference proportion of each index.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from tritonops.contract.names import OTHER_CATEGORY
from tritonops.contract.served import Bins

NAN_BIN_LABEL = "nan"


def category_text(value: object) -> str | None:
    """A category value as the bins see it: bytes decoded, None/NaN as None, anything else ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def assign_bins(feature_reference: Bins, values: Iterable[object] | npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The reference bin index of every value (see the module docstring for the numbering)."""
    if feature_reference.kind == "numeric":
        numbers = np.asarray(values, dtype=np.float64).reshape(-1)
        edges = np.asarray(feature_reference.bin_edges, dtype=np.float64)
        bins = np.searchsorted(edges, numbers, side="left").astype(np.int64)
        bins[np.isnan(numbers)] = len(edges) + 1
        return bins
    index: dict[str | None, int] = {category: i for i, category in enumerate(feature_reference.categories)}
    other = len(feature_reference.categories)
    flat = np.asarray(values, dtype=object).reshape(-1)
    return np.fromiter((index.get(category_text(v), other) for v in flat), dtype=np.int64, count=flat.size)


def bin_labels(feature_reference: Bins) -> list[str]:
    """The metric ``bin`` label for each bin index ``assign_bins`` can return."""
    if feature_reference.kind == "numeric":
        return [str(i) for i in range(len(feature_reference.bin_edges) + 1)] + [NAN_BIN_LABEL]
    return [*feature_reference.categories, OTHER_CATEGORY]


def reference_proportions(feature_reference: Bins) -> list[float]:
    """The reference proportion of each bin index, aligned with ``bin_labels`` (sums to 1)."""
    if feature_reference.kind == "numeric":
        return [*feature_reference.proportions, feature_reference.nan_proportion]
    return list(feature_reference.proportions)

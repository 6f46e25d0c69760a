"""Reference statistics for drift, computed at conversion: quantile bins for numbers, category shares for strings.

Bins are assigned with ``tritonops.contract.assign_bins``, the function the backend and the drift code use too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from tritonops.contract.bins import assign_bins, category_text
from tritonops.contract.manifest import CategoricalReference, NumericReference

DEFAULT_NUMERIC_BINS = 10
MAX_CATEGORIES = 50


def _proportions(bins: npt.NDArray[np.int64], n_bins: int) -> list[float]:
    if bins.size == 0:
        return [0.0] * n_bins
    counts = np.bincount(bins, minlength=n_bins)[:n_bins]
    return [float(c) / bins.size for c in counts]


def numeric_reference(values: npt.ArrayLike, n_bins: int = DEFAULT_NUMERIC_BINS) -> NumericReference:
    """Quantile bins of ``values`` as the model sees them (float32), with the share of each bin and of NaN.

    Edges are float32 numbers, so live FP32 inputs fall into the same bins as the reference data did;
    repeated quantiles (discrete features) collapse into one edge.
    """
    numbers = np.asarray(values, dtype=np.float32).astype(np.float64).reshape(-1)
    finite = numbers[~np.isnan(numbers)]
    if finite.size:
        quantiles = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="lower")
        edges = np.unique(quantiles.astype(np.float32)).astype(np.float64)
        # a top edge equal to the maximum would leave the last bin empty
        edges = edges[edges < finite.max()]
    else:
        edges = np.empty(0, dtype=np.float64)
    draft = NumericReference(bin_edges=edges.tolist(), proportions=[0.0] * (edges.size + 1), nan_proportion=0.0)
    shares = _proportions(assign_bins(draft, numbers), edges.size + 2)
    return NumericReference(bin_edges=draft.bin_edges, proportions=shares[:-1], nan_proportion=shares[-1])


def categorical_reference(
    values: Iterable[object], categories: Sequence[str] | None = None, max_categories: int = MAX_CATEGORIES
) -> CategoricalReference:
    """Category shares of ``values``; ``categories`` (e.g. an encoder's) or the most frequent observed ones."""
    texts = [category_text(v) for v in values]
    if categories is None:
        counts = Counter(t for t in texts if t is not None)
        categories = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]]
    draft = CategoricalReference(categories=list(categories), proportions=[0.0] * (len(categories) + 1))
    shares = _proportions(assign_bins(draft, np.asarray(texts, dtype=object)), len(categories) + 1)
    return CategoricalReference(categories=draft.categories, proportions=shares)

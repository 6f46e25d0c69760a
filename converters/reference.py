"""Reference statistics for drift: quantile bins for numbers, category proportions for strings.

``assign_bins`` is THE bin-assignment function: the converter uses it to compute the reference proportions,
the serving backend to count live inputs, and the drift code to compare the two, so all three agree exactly.

Bin indices for a feature with ``k`` regular bins (``k = len(bin_edges) + 1`` or ``len(categories) + 1``):

- numeric: ``0 .. k-1`` from ``numpy.searchsorted(bin_edges, x, side="left")`` (so ``x <= e1`` is bin 0),
  and ``k`` for NaN;
- categorical: the category's position in ``categories``, and ``len(categories)`` (= ``k-1``) for
  ``__other__`` (unseen values, None and NaN).

``bin_labels`` gives the metric label of each index (``"0".."k-1", "nan"`` or the category names and
``"__other__"``); ``reference_proportions`` the reference proportion of each index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from tritonops.converters.manifest import OTHER_CATEGORY, CategoricalReference, FeatureReference, NumericReference

NAN_BIN_LABEL = "nan"
DEFAULT_NUMERIC_BINS = 10
MAX_CATEGORIES = 50


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def assign_bins(feature_reference: FeatureReference, values: Iterable[object] | npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The reference bin index of every value (see the module docstring for the numbering)."""
    if isinstance(feature_reference, NumericReference):
        numbers = np.asarray(values, dtype=np.float64).reshape(-1)
        edges = np.asarray(feature_reference.bin_edges, dtype=np.float64)
        bins = np.searchsorted(edges, numbers, side="left").astype(np.int64)
        bins[np.isnan(numbers)] = len(edges) + 1
        return bins
    index: dict[str | None, int] = {category: i for i, category in enumerate(feature_reference.categories)}
    other = len(feature_reference.categories)
    flat = np.asarray(values, dtype=object).reshape(-1)
    return np.fromiter((index.get(_text(v), other) for v in flat), dtype=np.int64, count=flat.size)


def bin_labels(feature_reference: FeatureReference) -> list[str]:
    """The metric ``bin`` label for each bin index ``assign_bins`` can return."""
    if isinstance(feature_reference, NumericReference):
        return [str(i) for i in range(len(feature_reference.bin_edges) + 1)] + [NAN_BIN_LABEL]
    return [*feature_reference.categories, OTHER_CATEGORY]


def reference_proportions(feature_reference: FeatureReference) -> list[float]:
    """The reference proportion of each bin index, aligned with ``bin_labels`` (sums to 1)."""
    if isinstance(feature_reference, NumericReference):
        return [*feature_reference.proportions, feature_reference.nan_proportion]
    return list(feature_reference.proportions)


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
    texts = [_text(v) for v in values]
    if categories is None:
        counts = Counter(t for t in texts if t is not None)
        categories = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]]
    draft = CategoricalReference(categories=list(categories), proportions=[0.0] * (len(categories) + 1))
    shares = _proportions(assign_bins(draft, np.asarray(texts, dtype=object)), len(categories) + 1)
    return CategoricalReference(categories=draft.categories, proportions=shares)

"""What ``predict`` returns: labels and probabilities with the model's own class names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy.typing as npt
import pandas as pd

from tritonops.contract.names import CANARY_SUFFIX


@dataclass(frozen=True)
class Prediction:
    """Labels (class names, strings or ints), probabilities (``[rows, classes]``, columns in ``classes`` order),
    and which model and version answered (``model`` ends in ``__canary`` when the canary did)."""

    labels: npt.NDArray[Any]
    probabilities: npt.NDArray[Any]
    classes: tuple[str | int, ...]
    model: str
    version: str
    request_id: str
    index: pd.Index[Any]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def request_ids(self) -> tuple[str, ...]:
        """One id per row for ``feedback``: ``request_id`` itself for one row, ``<request_id>/<row>`` otherwise."""
        if len(self.labels) == 1:
            return (self.request_id,)
        return tuple(f"{self.request_id}/{row}" for row in range(len(self.labels)))

    @property
    def canary(self) -> bool:
        return self.model.endswith(CANARY_SUFFIX)

    def probability_frame(self) -> pd.DataFrame:
        """Probabilities as a DataFrame: one column per class name, the input's index."""
        return pd.DataFrame(self.probabilities, columns=list(self.classes), index=self.index)

    def to_frame(self) -> pd.DataFrame:
        """``label`` plus one probability column per class, indexed like the input DataFrame."""
        frame = self.probability_frame()
        frame.insert(0, "label", self.labels, allow_duplicates=True)
        return frame

"""Client-side canary routing: send the weight's share of requests to ``<model>__canary``.

With a key (user id, session...) the choice is sticky: the key's hash decides, so one key always lands on the
same side while the weight stays the same, and raising the weight only moves keys from live to canary. Without a
key, a counter keeps the canary's count at floor(requests x weight): the exact share over any run of
requests, with no sampling noise.
"""

from __future__ import annotations

import threading

from tritonops.contract.names import key_position
from tritonops.contract.signature import CanarySplit


class CanaryRouter:
    """Decides, request by request, whether the canary or the live model answers. Thread-safe."""

    def __init__(self) -> None:
        self._weight = -1.0
        self._sent = 0
        self._to_canary = 0
        self._lock = threading.Lock()

    def choose(self, live: str, split: CanarySplit | None, key: str | None = None) -> str:
        """The model name to send this request to."""
        if split is None or split.weight <= 0.0:
            return live
        if key is not None:
            return split.model if key_position(key) < split.weight else live
        with self._lock:
            if split.weight != self._weight:  # a new weight starts a new count
                self._weight, self._sent, self._to_canary = split.weight, 0, 0
            self._sent += 1
            if self._to_canary + 1 <= self._sent * split.weight + 1e-9:
                self._to_canary += 1
                return split.model
        return live

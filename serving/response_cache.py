"""A bounded LRU of successful predictions, keyed by a request's validated inputs: pure Python + numpy.

Replaces Triton's response cache for the tritonops backend: Triton 2.51 caches a backend's error response as an
empty success, so a repeated bad request came back as HTTP 200 with no outputs. Here only predictions are ever
stored, and the backend looks a request up only after validating it, so a bad request is refused every time.

One cache per model instance; Triton calls an instance's ``execute`` from one thread, so there is no lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Generic, TypeVar

import numpy as np

from tritonops.contract.errors import ModelConfigError
from tritonops.serving.validation import Batch

V = TypeVar("V")


def request_key(batch: Batch) -> bytes:
    """A digest of one validated request: every input's name, dtype, shape and values.

    FP32 inputs hash their bytes; string inputs hash each value's length and UTF-8 bytes, so no two different
    requests share an encoding.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(batch):
        array = batch[name]
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        if array.dtype == np.object_:
            for value in array.reshape(-1).tolist():
                text = str(value).encode("utf-8")
                digest.update(len(text).to_bytes(8, "little"))
                digest.update(text)
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


class ResponseCache(Generic[V]):
    """The answers to the last ``capacity`` distinct requests; the least recently used entry goes first.

    The caller stores values that own their memory (never views of a batch's outputs).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ModelConfigError(f"response cache capacity: expected at least 1 entry, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[bytes, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> V | None:
        """The stored answer for ``key`` (now the most recently used), or None."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: bytes, value: V) -> None:
        """Store ``value`` as the most recently used entry; evict the least recently used beyond capacity."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

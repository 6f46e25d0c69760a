"""Client-side round robin over every server a DNS name lists (a headless Service's pods).

One transport (one gRPC channel or HTTP pool) per address; each request goes to the next address in turn, so one
client spreads its load over every pod instead of sticking to the one connection a Service VIP would give it. A
server that fails with a retryable error (refused, reset, UNAVAILABLE, 502/503) is taken out of the rotation and the
same request goes to the next one at once: predictions are idempotent, so a pod that goes away costs no failed call.
The name is resolved again every ``resolve_interval`` seconds (and at once when every server failed): new pods
join, vanished ones are closed, and a dropped one that is still listed gets another chance.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from tritonclient.utils import InferenceServerException

from tritonops.clients.connection import Target
from tritonops.clients.retry import is_retryable
from tritonops.clients.transport import Answer, AsyncTransport, Route, SyncTransport
from tritonops.contract.encoding import Tensor

T = TypeVar("T")
_FAILURES = (InferenceServerException, OSError, asyncio.TimeoutError)


class _Rotation:
    """Which addresses are in rotation, whose turn it is, and which failed since the last resolve."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.addresses: list[str] = []
        self.down: set[str] = set()
        self.turn = 0
        self.resolved_at = float("-inf")
        self.served: Counter[str] = Counter()
        """Answers per address (what the client saw; Triton's statistics say the same from the servers)."""

    def due(self, interval: float) -> bool:
        return time.monotonic() - self.resolved_at >= interval

    def keep(self) -> None:
        """The name could not be resolved: keep the last answer for another interval."""
        self.resolved_at = time.monotonic()

    def replace(self, addresses: Sequence[str]) -> tuple[list[str], list[str]]:
        """Take the new answer; return (added, removed)."""
        added = [a for a in addresses if a not in self.addresses]
        removed = [a for a in self.addresses if a not in addresses]
        self.addresses = list(addresses)
        self.down.clear()
        self.resolved_at = time.monotonic()
        return added, removed

    def order(self) -> list[str]:
        """This request's addresses: the healthy ones from the next turn on, then the dropped ones."""
        if not self.addresses:
            raise OSError(f"{self.url}: the name lists no server right now")
        start = self.turn % len(self.addresses)
        self.turn += 1
        rotated = self.addresses[start:] + self.addresses[:start]
        return [a for a in rotated if a not in self.down] + [a for a in rotated if a in self.down]


class PooledTransport:
    """A ``SyncTransport`` over every server ``target`` names (see the module docstring)."""

    def __init__(self, target: Target, make: Callable[[str], SyncTransport], resolve_interval: float = 5.0) -> None:
        self.url = f"dns:{target.host}:{target.port}"
        self._target, self._make, self._interval = target, make, resolve_interval
        self._rotation = _Rotation(self.url)
        self._transports: dict[str, SyncTransport] = {}
        self._retired: list[SyncTransport] = []
        self._lock = threading.Lock()

    @property
    def served(self) -> Counter[str]:
        return self._rotation.served

    def addresses(self) -> list[str]:
        with self._lock:
            self._resolve(force=False)
            return list(self._rotation.addresses)

    def _resolve(self, force: bool) -> None:
        if not force and not self._rotation.due(self._interval):
            return
        try:
            addresses = self._target.resolve()
        except OSError:
            if not self._rotation.addresses:
                raise
            self._rotation.keep()  # DNS trouble: go on with the servers we know
            return
        added, removed = self._rotation.replace(addresses)
        for transport in self._retired:  # closed one interval later: requests in flight on them have finished
            transport.close()
        self._retired = [self._transports.pop(address) for address in removed]
        for address in added:
            self._transports[address] = self._make(address)

    def _each(self, call: Callable[[SyncTransport], T]) -> T:
        with self._lock:
            self._resolve(force=False)
            order = [(a, self._transports[a]) for a in self._rotation.order()]
        error: BaseException | None = None
        for address, transport in order:
            try:
                result = call(transport)
            except _FAILURES as failure:
                if not is_retryable(failure):
                    raise
                error = failure
                with self._lock:
                    self._rotation.down.add(address)
                continue
            with self._lock:
                self._rotation.served[address] += 1
            return result
        with self._lock:
            self._resolve(force=True)
        assert error is not None
        raise error

    def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        return self._each(lambda transport: transport.infer(model, tensors, request_id, timeout, route))

    def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        return self._each(lambda transport: transport.model_config(model, timeout))

    def close(self) -> None:
        with self._lock:
            for transport in [*self._transports.values(), *self._retired]:
                transport.close()
            self._transports.clear()
            self._retired.clear()


class AsyncPooledTransport:
    """The asyncio twin of ``PooledTransport``."""

    def __init__(self, target: Target, make: Callable[[str], AsyncTransport], resolve_interval: float = 5.0) -> None:
        self.url = f"dns:{target.host}:{target.port}"
        self._target, self._make, self._interval = target, make, resolve_interval
        self._rotation = _Rotation(self.url)
        self._transports: dict[str, AsyncTransport] = {}
        self._retired: list[AsyncTransport] = []
        self._lock = asyncio.Lock()

    @property
    def served(self) -> Counter[str]:
        return self._rotation.served

    async def _resolve(self, force: bool) -> None:
        if not force and not self._rotation.due(self._interval):
            return
        try:
            addresses = await asyncio.to_thread(self._target.resolve)
        except OSError:
            if not self._rotation.addresses:
                raise
            self._rotation.keep()
            return
        added, removed = self._rotation.replace(addresses)
        for transport in self._retired:
            await transport.close()
        self._retired = [self._transports.pop(address) for address in removed]
        for address in added:
            self._transports[address] = self._make(address)

    async def _each(self, call: Callable[[AsyncTransport], Awaitable[T]]) -> T:
        async with self._lock:
            await self._resolve(force=False)
            order = [(a, self._transports[a]) for a in self._rotation.order()]
        error: BaseException | None = None
        for address, transport in order:
            try:
                result = await call(transport)
            except _FAILURES as failure:
                if not is_retryable(failure):
                    raise
                error = failure
                self._rotation.down.add(address)
                continue
            self._rotation.served[address] += 1
            return result
        async with self._lock:
            await self._resolve(force=True)
        assert error is not None
        raise error

    async def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        return await self._each(lambda transport: transport.infer(model, tensors, request_id, timeout, route))

    async def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        return await self._each(lambda transport: transport.model_config(model, timeout))

    async def close(self) -> None:
        async with self._lock:
            for transport in [*self._transports.values(), *self._retired]:
                await transport.close()
            self._transports.clear()
            self._retired.clear()

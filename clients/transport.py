"""One small interface over ``tritonclient``'s four clients (gRPC / HTTP, sync / asyncio).

Each transport holds one long-lived ``InferenceServerClient`` (one gRPC channel, one HTTP connection pool), so
connections are reused across calls. Transport errors are left as they come; ``tritonops.clients.retry``
classifies them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio

from tritonops.clients.connection import GrpcChannelOptions, TlsOptions
from tritonops.contract.encoding import Tensor
from tritonops.contract.names import OUTPUTS, REQUEST_ID_PARAMETER, ROUTE_KEY_PARAMETER, VERSION_OUTPUT
from tritonops.errors import ConfigurationError

Protocol_ = Literal["grpc", "http"]


@dataclass(frozen=True)
class Answer:
    """The outputs of one inference and the model version that produced them."""

    outputs: dict[str, npt.NDArray[Any]]
    model_version: str
    """The version Triton names (the live model's, for a request the server routed to its canary)."""
    served_version: str | None = None
    """The version that scored the request, from the ``served_version`` output (None: not asked for)."""


class SyncTransport(Protocol):
    url: str

    def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer: ...
    def model_config(self, model: str, timeout: float) -> Mapping[str, Any]: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    url: str

    async def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer: ...
    async def model_config(self, model: str, timeout: float) -> Mapping[str, Any]: ...
    async def close(self) -> None: ...


Route = tuple[str | None, bool] | None
"""For a model that names its version: (the sticky routing key or None, True); None otherwise."""


def _parameters(request_id: str, route: Route) -> dict[str, str] | None:
    parameters = {REQUEST_ID_PARAMETER: request_id} if request_id else {}
    if route is not None and route[0] is not None:
        parameters[ROUTE_KEY_PARAMETER] = route[0]
    return parameters or None


def _answer(result: Any, model_version: str, route: Route) -> Answer:
    if route is None:
        return Answer(_outputs(result), model_version)
    served = result.as_numpy(VERSION_OUTPUT)
    return Answer(_outputs(result), model_version, str(int(served.reshape(-1)[0])) if served is not None else None)


def _grpc_inputs(tensors: Sequence[Tensor]) -> list[grpcclient.InferInput]:
    inputs = []
    for tensor in tensors:
        item = grpcclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data)
        inputs.append(item)
    return inputs


def _http_inputs(tensors: Sequence[Tensor]) -> list[httpclient.InferInput]:
    inputs = []
    for tensor in tensors:
        item = httpclient.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.data, binary_data=True)
        inputs.append(item)
    return inputs


def _outputs(result: Any) -> dict[str, npt.NDArray[Any]]:
    values = {}
    for name in OUTPUTS:
        array = result.as_numpy(name)
        values[name] = np.asarray(array) if array is not None else np.empty((0,))
    return values


def _grpc_connection(tls: TlsOptions | None, channel: GrpcChannelOptions | None) -> dict[str, Any]:
    """tritonclient's keyword arguments for a gRPC channel: credentials and channel arguments."""
    args = (channel or GrpcChannelOptions()).channel_args(tls)
    return {"channel_args": args, "creds": tls.grpc_credentials() if tls is not None else None}


def _gevent_ssl(tls: TlsOptions | None) -> dict[str, Any]:
    """tritonclient.http's keyword arguments for TLS (geventhttpclient verifies ``server_name`` when given)."""
    if tls is None:
        return {}
    import gevent.ssl

    context = tls.ssl_context(gevent.ssl.create_default_context())
    options = {"server_hostname": tls.server_name} if tls.server_name else {}
    return {"ssl": True, "ssl_options": options, "ssl_context_factory": lambda *args, **kwargs: context}


class GrpcTransport:
    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        tls: TlsOptions | None = None,
        channel: GrpcChannelOptions | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self._client = grpcclient.InferenceServerClient(url, **_grpc_connection(tls, channel))
        self._outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
        self._versioned = [*self._outputs, grpcclient.InferRequestedOutput(VERSION_OUTPUT)]

    def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        result = self._client.infer(
            model,
            _grpc_inputs(tensors),
            outputs=self._outputs if route is None else self._versioned,
            request_id=request_id,
            client_timeout=timeout,
            headers=self.headers or None,
            parameters=_parameters(request_id, route),
        )
        return _answer(result, str(result.get_response().model_version), route)

    def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        config: Mapping[str, Any] = self._client.get_model_config(
            model, headers=self.headers or None, as_json=True, client_timeout=timeout
        )
        return config

    def close(self) -> None:
        self._client.close()


class HttpTransport:
    """Blocking HTTP (geventhttpclient pool): use one instance per thread, ``concurrency`` connections each."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        concurrency: int = 1,
        tls: TlsOptions | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self._client = httpclient.InferenceServerClient(
            url, concurrency=concurrency, connection_timeout=timeout, network_timeout=timeout, **_gevent_ssl(tls)
        )
        self._outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
        self._versioned = [*self._outputs, httpclient.InferRequestedOutput(VERSION_OUTPUT, binary_data=True)]

    def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        result = self._client.infer(
            model,
            _http_inputs(tensors),
            outputs=self._outputs if route is None else self._versioned,
            request_id=request_id,
            headers=self.headers or None,
            parameters=_parameters(request_id, route),
        )
        return _answer(result, str(result.get_response().get("model_version", "")), route)

    def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        config: Mapping[str, Any] = self._client.get_model_config(model, headers=self.headers or None)
        return config

    def close(self) -> None:
        self._client.close()


class AsyncGrpcTransport:
    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        tls: TlsOptions | None = None,
        channel: GrpcChannelOptions | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self._client = grpcaio.InferenceServerClient(url, **_grpc_connection(tls, channel))
        self._outputs = [grpcaio.InferRequestedOutput(name) for name in OUTPUTS]
        self._versioned = [*self._outputs, grpcaio.InferRequestedOutput(VERSION_OUTPUT)]

    async def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        result = await self._client.infer(
            model,
            _grpc_inputs(tensors),
            outputs=self._outputs if route is None else self._versioned,
            request_id=request_id,
            client_timeout=timeout,
            headers=self.headers or None,
            parameters=_parameters(request_id, route),
        )
        return _answer(result, str(result.get_response().model_version), route)

    async def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        config: Mapping[str, Any] = await self._client.get_model_config(
            model, headers=self.headers or None, as_json=True, client_timeout=timeout
        )
        return config

    async def close(self) -> None:
        await self._client.close()


class AsyncHttpTransport:
    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        connections: int = 100,
        tls: TlsOptions | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        if tls is not None and tls.server_name:
            raise ConfigurationError(
                "TlsOptions.server_name: the asyncio HTTP transport verifies the host it dials; dial that name, "
                "or use gRPC or the blocking HTTP client"
            )
        ssl_args: dict[str, Any] = {"ssl": True, "ssl_context": tls.ssl_context()} if tls is not None else {}
        self._client = httpaio.InferenceServerClient(url, conn_limit=connections, **ssl_args)
        self._outputs = [httpaio.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
        self._versioned = [*self._outputs, httpaio.InferRequestedOutput(VERSION_OUTPUT, binary_data=True)]

    async def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        inputs = []
        for tensor in tensors:
            item = httpaio.InferInput(tensor.name, list(tensor.data.shape), tensor.datatype)
            item.set_data_from_numpy(tensor.data, binary_data=True)
            inputs.append(item)
        call = self._client.infer(
            model,
            inputs,
            outputs=self._outputs if route is None else self._versioned,
            request_id=request_id,
            headers=self.headers or None,
            parameters=_parameters(request_id, route),
        )
        result = await _bounded(call, timeout)
        return _answer(result, str(result.get_response().get("model_version", "")), route)

    async def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        config: Mapping[str, Any] = await _bounded(
            self._client.get_model_config(model, headers=self.headers or None), timeout
        )
        return config

    async def close(self) -> None:
        await self._client.close()


async def _bounded(call: Any, timeout: float) -> Any:
    """Await ``call`` for at most ``timeout`` seconds; aiohttp's connection errors become ``ConnectionError``."""
    try:
        return await asyncio.wait_for(call, timeout)
    except aiohttp.ClientConnectionError as exc:
        raise ConnectionError(str(exc)) from exc

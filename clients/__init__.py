"""tritonops clients SDK: ``predict`` against a model served by Triton, over gRPC or HTTP, sync or asyncio.

>>> from tritonops.clients import TritonClient
>>> with TritonClient("127.0.0.1:8001", "churn") as client:
...     prediction = client.predict(frame)          # any column order; class names as trained
...     prediction.to_frame()

Feature order, dtypes and classes come from the model's ``tritonops.signature`` config parameter; the canary
split from ``tritonops.canary`` (docs/contracts.md).
"""

from tritonops.clients.client import AsyncTritonClient, ClientOptions, TritonClient
from tritonops.clients.connection import GrpcChannelOptions, TlsOptions
from tritonops.clients.errors import (
    ClientError,
    InferenceError,
    InputError,
    MissingFeatureError,
    ServerUnavailableError,
    SignatureError,
)
from tritonops.clients.feedback import FeedbackSink, FeedbackStats, HttpFeedbackSink
from tritonops.clients.prediction import Prediction
from tritonops.clients.retry import RetryPolicy
from tritonops.clients.routing import CanaryRouter
from tritonops.contract.signature import CanarySplit, Signature
from tritonops.contract.signature import SignatureFeature as Feature

__all__ = [
    "AsyncTritonClient",
    "CanaryRouter",
    "CanarySplit",
    "ClientError",
    "ClientOptions",
    "Feature",
    "FeedbackSink",
    "FeedbackStats",
    "GrpcChannelOptions",
    "HttpFeedbackSink",
    "InferenceError",
    "InputError",
    "MissingFeatureError",
    "Prediction",
    "RetryPolicy",
    "ServerUnavailableError",
    "Signature",
    "SignatureError",
    "TlsOptions",
    "TritonClient",
]

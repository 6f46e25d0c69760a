"""Load tests and the side-by-side benchmark.

- ``python -m tritonops.loadtest.run``: Locust (HTTP + gRPC users) headless, p50/p95/p99, req/s, failures
- ``python -m tritonops.loadtest.rollout``: the same load while ``tritonops promote`` / ``rollback`` run;
  0 failures or exit 1
- ``python -m tritonops.loadtest.bench`` (``make bench``): in-process ONNX Runtime vs Triton vs Flask + joblib
  vs MLServer
"""

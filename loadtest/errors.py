"""Errors of the load tests and the benchmark harness."""

from __future__ import annotations

from tritonops.errors import ExitCode, TritonOpsError


class BenchmarkError(TritonOpsError):
    """A benchmark target or load generator failed to start, run or report."""

    exit_code = ExitCode.BENCHMARK

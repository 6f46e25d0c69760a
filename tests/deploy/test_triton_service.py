"""The Triton entrypoint of the GPU image (deploy/docker/triton-entrypoint.sh), run for real with the tritonserver
of the nvidia-pytriton wheel (the same Triton 2.51 as NGC 24.10) and a backend directory laid out like the image's:
it starts with explicit model control, tcmalloc, summary latencies, no config auto-completion and one OpenBLAS
thread for the stubs, and locks the admin API with the token file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from examples.train import train_numeric_pipeline
from tests.deploy.conftest import DEPLOY, answers
from tritonops.control_plane.desired import version_config
from tritonops.converters.convert import convert_sklearn
from tritonops.model_config import to_json, with_specific_versions
from tritonops.serving.allocator import find_tcmalloc
from tritonops.serving.install import locate_tritonserver, prepare_backend_directory
from tritonops.serving.triton import ServerOptions, TritonServer, free_port

pytestmark = pytest.mark.integration

ENTRYPOINT = DEPLOY / "docker" / "triton-entrypoint.sh"
TOKEN = "s3cret-token-for-tests"


def test_entrypoint_serves_with_summaries_and_a_locked_admin_api(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    repository.mkdir()
    trained = train_numeric_pipeline(n_rows=200, n_features=4)
    convert_sklearn(trained.model, trained.frame, name="gpuimg", repository=repository)
    install = locate_tritonserver()
    backends = prepare_backend_directory(install, tmp_path / "backends")  # NGC: /opt/tritonserver/backends
    launcher = TritonServer(ServerOptions(model_repository=repository))
    launcher.install = install
    env = launcher.environment()  # the wheel's shared libraries; NGC has them in place
    (tmp_path / "admin_token").write_text(TOKEN + "\n", encoding="utf-8")
    http, grpc, metrics = free_port(), free_port(), free_port()
    env.update(
        TRITONSERVER_BIN=str(install.binary),
        TRITON_BACKEND_DIR=str(backends),
        TRITONOPS_REPOSITORY=str(repository),
        TRITONOPS_ADMIN_TOKEN_FILE=str(tmp_path / "admin_token"),
        TRITON_HTTP_PORT=str(http),
        TRITON_GRPC_PORT=str(grpc),
        TRITON_METRICS_PORT=str(metrics),
    )
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    env.pop("OPENBLAS_NUM_THREADS", None)  # the entrypoint's own default must show
    log = tmp_path / "triton.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["/bin/sh", str(ENTRYPOINT), "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
             "--metrics-address=127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    try:
        deadline = time.monotonic() + 60
        while not answers(f"http://127.0.0.1:{http}/v2/health/ready"):
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        assert client.get_model_repository_index(headers={"admin-key": TOKEN}) is not None
        tcmalloc = find_tcmalloc()
        assert tcmalloc is not None, "tcmalloc is not installed: `make setup` (Debian libtcmalloc-minimal4)"
        assert str(tcmalloc) in Path(f"/proc/{process.pid}/maps").read_text()  # exec'd: the pid is tritonserver's

        config = to_json(with_specific_versions(version_config(repository, "gpuimg", 1), [1]))
        with pytest.raises(InferenceServerException, match="admin-key"):
            client.load_model("gpuimg", config=config)  # explicit mode, no key: refused
        assert not client.is_model_ready("gpuimg")
        client.load_model("gpuimg", config=config, headers={"admin-key": TOKEN})
        assert client.is_model_ready("gpuimg", "1")
        assert "--disable-auto-complete-config" in Path(f"/proc/{process.pid}/cmdline").read_text().split("\0")
        stubs = [p for p in psutil.Process(process.pid).children() if p.name() == "triton_python_backend_stub"]
        instances = sum(group.count for group in version_config(repository, "gpuimg", 1).instance_group)
        assert len(stubs) == instances >= 1
        assert all("OPENBLAS_NUM_THREADS=1" in Path(f"/proc/{s.pid}/environ").read_text().split("\0") for s in stubs)

        rows = trained.frame.to_numpy(dtype=np.float32)[:8]
        tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        labels = client.infer("gpuimg", [tensor]).as_numpy("label")
        assert labels is not None and labels.shape[0] == 8
        rows_scored = re.compile(r'^tritonops_rows_total\{model="gpuimg",version="1"\} 8(\.0)?$', re.MULTILINE)
        deadline = time.monotonic() + 10  # our backend flushes its counters every second
        exposed = ""
        while not rows_scored.search(exposed):
            assert time.monotonic() < deadline, exposed[-3000:]
            time.sleep(0.5)
            exposed = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        summary = r'^nv_inference_request_summary_us\{model="gpuimg",version="1",quantile="0.99"\} \d+'
        assert re.search(summary, exposed, re.MULTILINE), "summary latencies are off"
    finally:
        client.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]

"""The repository on its own is safe for any Triton, and reconcile's loads are audited.

A real explicit-mode server is the fleet the control plane promotes and rolls back on; after each, a second,
stock server (model-control mode ``none``: it loads every model of the repository from disk, as KServe's Triton
runtime does) must serve exactly the live version, and a never-promoted model not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tritonops.control_plane import rollout
from tritonops.control_plane.fleet import reconcile
from tritonops.control_plane.state import StateStore
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.serving.triton import ServerOptions, TritonServer
from tritonops.settings import Settings

pytestmark = pytest.mark.integration

MODEL = "stock"
FRESH = "fresh"
"""Converted, never promoted."""


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    repo = tmp_path_factory.mktemp("stock_repo")
    trained = train_numeric_pipeline(n_rows=150, n_features=4)
    options = ConversionOptions(native_export=False)  # this Triton has no onnxruntime backend to load it with
    for name in (MODEL, MODEL, FRESH):
        convert_sklearn(trained.model, trained.frame, name=name, repository=repo, options=options)
    state = tmp_path_factory.mktemp("stock_state") / "state.db"
    return Settings(repository=repo, state_path=state, admin_token=None)


@pytest.fixture(scope="module")
def fleet(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    work = tmp_path_factory.mktemp("stock_fleet")
    with TritonServer(ServerOptions(model_repository=settings.repository, work_dir=work)) as server:
        rollout.fleet_add(settings, server.grpc_url, actor="test")
        yield server


def _stock_triton_serves(settings: Settings, work: Path) -> tuple[dict[str, str], str]:
    """Start a stock Triton (mode none) on the repository: each model version's state, the version that answers
    an unversioned request of MODEL, and the server log."""
    options = ServerOptions(
        model_repository=settings.repository,
        work_dir=work,
        extra_args=("--model-control-mode=none", "--exit-on-error=false"),
    )
    with TritonServer(options) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            index = client.get_model_repository_index(as_json=True)["models"]
            states = {f"{m['name']}/{m.get('version', '')}": m.get("state", "") for m in index}
            tensor = grpcclient.InferInput("input", [1, 4], "FP32")
            tensor.set_data_from_numpy(np.full((1, 4), 0.5, np.float32))
            answer = client.infer(MODEL, [tensor]).get_response(as_json=True)
            states["answered by"] = answer["model_version"]
        finally:
            client.close()
        assert server.log_path is not None
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
    return states, log


def test_stock_triton_serves_exactly_the_live_version_after_promote_and_rollback(
    settings: Settings, fleet: TritonServer, tmp_path: Path
) -> None:
    for target in (1, 2):
        rollout.promote(settings, MODEL, target, actor="test")
    states, log = _stock_triton_serves(settings, tmp_path / "after-promote")
    assert {k: v for k, v in states.items() if k.startswith(f"{MODEL}/")} == {f"{MODEL}/2": "READY"}
    assert states["answered by"] == "2"
    assert not any(k.startswith(f"{FRESH}/") for k in states)  # refused at load, not served
    assert f"at least one version must be available under the version policy of model '{FRESH}'" in log

    rollout.rollback(settings, MODEL, actor="test")
    states, _ = _stock_triton_serves(settings, tmp_path / "after-rollback")
    assert {k: v for k, v in states.items() if k.startswith(f"{MODEL}/")} == {f"{MODEL}/1": "READY"}
    assert states["answered by"] == "1"


def test_reconcile_audits_each_load_and_a_quiet_run_adds_nothing(settings: Settings, fleet: TritonServer) -> None:
    with StateStore.open(settings.state_path) as store:
        live = store.model(MODEL)
        assert live is not None and live.live is not None
        admin = grpcclient.InferenceServerClient(fleet.grpc_url)
        admin.unload_model(MODEL)  # drift: the live model is gone from the endpoint
        admin.close()
        before = store.audit(MODEL)
        report = reconcile(store, settings.repository, {}, actor="carol")
        assert report.ok
        events = store.audit(MODEL)[len(before) :]
        assert [(e.action, e.result, e.actor, e.to_version) for e in events] == [
            ("reconcile-apply", "ok", "carol", live.live)
        ]
        detail = json.loads(events[0].detail)
        assert detail["endpoint"] == fleet.grpc_url
        assert detail["differed"] == [f"{MODEL}: not loaded (want version {live.live})"]
        assert detail["actions"] == [f"loaded {MODEL} version {live.live} (warmed up)"]
        assert detail["error"] is None
        everything = len(store.audit(None))
        quiet = reconcile(store, settings.repository, {}, actor="carol", audit_in_sync=False)
        assert quiet.ok and not any(r.actions or r.divergence for r in quiet.endpoints) and not quiet.published
        assert len(store.audit(None)) == everything  # nothing to do: no audit event at all

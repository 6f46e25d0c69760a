"""Rollout logic without a server: configs and files to load, canary parameter, gates and refusals, audit, secrets.

Refusals that need an endpoint use a real closed port (connection refused), not a mock.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from tritonops.contract.manifest import Manifest
from tritonops.contract.signature import CanarySplit
from tritonops.control_plane import rollout
from tritonops.control_plane.desired import (
    canary_config,
    canary_files,
    live_config,
    version_manifest,
)
from tritonops.control_plane.endpoint import grpc_admin_headers
from tritonops.control_plane.errors import (
    EndpointUnreachableError,
    FleetError,
    GateError,
    InvalidRolloutError,
    NoStateError,
    RolloutInProgressError,
    UnknownModelError,
    UnknownVersionError,
)
from tritonops.control_plane.fleet import sample_inputs
from tritonops.control_plane.state import AuditEntry, ModelState, StateStore
from tritonops.errors import TritonOpsError
from tritonops.model_config import TensorSpec, embedded_config, to_pbtxt
from tritonops.serving.triton import free_port
from tritonops.settings import Settings, StateLocation

TOKEN = "tok-8d1f0c2e-very-secret"
TABLES_SQL = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
}


def manifest_dict(model: str, version: int, *, parity_passed: bool = True) -> dict[str, object]:
    """A small but complete manifest: two numeric features in one FP32 tensor, string classes."""
    return {
        "name": model,
        "version": version,
        "created_at": "2026-11-24T12:00:00+00:00",
        "source": {
            "framework": "sklearn",
            "framework_version": "1.9.1",
            "estimator": "sklearn.linear_model.LogisticRegression",
            "tritonops_version": "0.1.0",
            "converter": {"skl2onnx": "1.20.0", "onnx": "1.23.2", "onnxruntime": "1.32.0"},
        },
        "onnx": {"file": "model.onnx", "sha256": "0" * 64, "opset": 17, "ir_version": 9},
        "features": [
            {"name": f, "tensor": "input", "dtype": "float", "kind": "numeric", "column": i, "allow_nan": False}
            for i, f in enumerate(["b", "a"])
        ],
        "inputs": [{"name": "input", "datatype": "FP32", "features": ["a", "b"]}],
        "classes": ["no", "yes"],
        "class_dtype": "string",
        "parity": {
            "passed": parity_passed,
            "rows": 100,
            "label_agreement": 1.0 if parity_passed else 0.91,
            "max_abs_prob_diff": 1e-7 if parity_passed else 0.2,
            "tie_rows": 0,
            "thresholds": {"min_label_agreement": 1.0, "max_prob_diff": 1e-4},
            "worst_rows": [],
        },
        "reference": {
            "rows": 100,
            "features": {
                f: {"kind": "numeric", "bin_edges": [0.0], "proportions": [0.5, 0.5], "nan_proportion": 0.0}
                for f in ("a", "b")
            },
            "predictions": {"classes": ["no", "yes"], "proportions": [0.5, 0.5]},
            "sample": {"b": [1.0, 2.0, 3.0], "a": [-1.0, None, 0.5]},
            "expected": {"labels": ["no", "yes", "yes"], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]},
        },
    }


def write_version(repository: Path, model: str, version: int, *, parity_passed: bool = True) -> Path:
    path = repository / model / str(version)
    path.mkdir(parents=True)
    config = embedded_config(
        model,
        version,
        [TensorSpec("input", "FP32", (2,))],
        [TensorSpec("label", "BYTES", (1,)), TensorSpec("probabilities", "FP32", (2,))],
    )
    (path / "config.pbtxt").write_text(to_pbtxt(config))
    (path / "manifest.json").write_text(json.dumps(manifest_dict(model, version, parity_passed=parity_passed)))
    (path / "model.onnx").write_bytes(b"onnx-bytes-" + str(version).encode())
    (path / "labels.txt").write_text("no\nyes\n")
    return path


@pytest.fixture
def settings(tmp_path: Path, state_location: StateLocation) -> Settings:
    """A repository with versions 1, 2 and 3 (3 failed parity); the state on SQLite, then on PostgreSQL."""
    repository = tmp_path / "repo"
    write_version(repository, "rf", 1)
    write_version(repository, "rf", 2)
    write_version(repository, "rf", 3, parity_passed=False)
    return Settings(
        repository=repository,
        state_path=state_location.path or tmp_path / "unused.db",
        admin_token=TOKEN,
        state_url=state_location.url,
        state_password=state_location.password,
    )


def with_unreachable_fleet(settings: Settings) -> str:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    rollout.fleet_add(settings, endpoint, actor="alice")
    return endpoint


def audit_of(settings: Settings, model: str = "rf") -> list[tuple[str, str]]:
    with StateStore.open(settings.state) as store:
        return [(e.action, e.result) for e in store.audit(model)]


# -- names, actor, headers ---------------------------------------------------------------------------
def test_actor_comes_from_option_then_environment_then_user() -> None:
    assert rollout.resolve_actor("carol", {"TRITONOPS_ACTOR": "ci", "USER": "bob"}) == "carol"
    assert rollout.resolve_actor(None, {"TRITONOPS_ACTOR": "ci", "USER": "bob"}) == "ci"
    assert rollout.resolve_actor(None, {"USER": "bob"}) == "bob"
    assert rollout.resolve_actor(None, {}) == "unknown"


@pytest.mark.parametrize("name", ["rf__canary", "1rf", "", "a" * 64, "r f"])
def test_model_names_follow_the_contract(name: str) -> None:
    with pytest.raises(InvalidRolloutError, match=r"model name .*reserved for aliases"):
        rollout.check_model_name(name)


def test_grpc_admin_header_is_triton_s_restricted_protocol_name() -> None:
    assert grpc_admin_headers({"admin-key": "x"}) == {"triton-grpc-protocol-admin-key": "x"}
    assert grpc_admin_headers({}) == {}


# -- what gets loaded ----------------------------------------------------------------------------------
def test_live_config_serves_exactly_live_and_publishes_the_split(settings: Settings) -> None:
    plain = live_config(settings.repository, ModelState("rf", 2, None, 0.0))
    assert plain.name == "rf"
    assert list(plain.version_policy.specific.versions) == [2]
    assert "tritonops.canary" not in plain.parameters
    assert plain.backend == "tritonops"

    split = live_config(settings.repository, ModelState("rf", 1, 2, 0.1))
    assert list(split.version_policy.specific.versions) == [1]
    text = split.parameters["tritonops.canary"].string_value
    assert json.loads(text) == {"model": "rf__canary", "version": 2, "weight": 0.1}
    # the SDK reads the split from get_model_config's JSON: the two sides agree
    as_json = {"config": json_format.MessageToDict(split, preserving_proto_field_name=True)}
    routed = CanarySplit.from_config("rf", as_json)
    assert routed is not None and (routed.model, routed.version, routed.weight) == ("rf__canary", 2, 0.1)
    candidate = {"config": json_format.MessageToDict(live_config(settings.repository, ModelState("rf", 1, 2, 0.0)))}
    assert CanarySplit.from_config("rf", candidate) is None  # weight 0: a deployed candidate takes no traffic


def test_canary_alias_is_loaded_from_the_version_bytes(settings: Settings) -> None:
    config = canary_config(settings.repository, "rf", 2)
    assert config.name == "rf__canary"
    assert list(config.version_policy.specific.versions) == [2]
    assert config.parameters["tritonops.model"].string_value == "rf"  # metrics keep the real model name
    files = canary_files(settings.repository, "rf", 2)
    assert sorted(files) == ["file:2/labels.txt", "file:2/manifest.json", "file:2/model.onnx"]
    assert files["file:2/model.onnx"] == b"onnx-bytes-2"
    assert CanarySplit("rf__canary", 4, 0.25).to_parameters() == {
        "tritonops.canary": '{"model":"rf__canary","version":4,"weight":0.25}'
    }


def test_missing_version_or_config_is_named(settings: Settings) -> None:
    with pytest.raises(UnknownVersionError, match=r"'rf' version 9: no directory .*rf/9 in the model repository"):
        live_config(settings.repository, ModelState("rf", 9, None, 0.0))
    (settings.repository / "rf" / "2" / "config.pbtxt").unlink()
    with pytest.raises(UnknownVersionError, match=r"version 2: missing .*config.pbtxt"):
        canary_config(settings.repository, "rf", 2)


def test_a_manifest_for_another_version_is_refused(settings: Settings) -> None:
    manifest = settings.repository / "rf" / "2" / "manifest.json"
    manifest.write_text(json.dumps(manifest_dict("rf", 1)))
    with pytest.raises(UnknownVersionError, match=r"manifest.json names 'rf' version 1, not this version"):
        version_manifest(settings.repository, "rf", 2)


def test_sample_inputs_follow_feature_columns_and_keep_nan() -> None:
    manifest = Manifest.model_validate(manifest_dict("rf", 1))
    (tensor,) = sample_inputs(manifest)
    assert tensor.name() == "input" and tensor.datatype() == "FP32" and tensor.shape() == [3, 2]
    raw = np.frombuffer(tensor._get_content(), dtype=np.float32).reshape(3, 2)
    # column 0 is feature "b", column 1 is "a" (manifest columns, not the order listed in the input)
    np.testing.assert_array_equal(raw[:, 0], [1.0, 2.0, 3.0])
    assert raw[0, 1] == -1.0 and np.isnan(raw[1, 1]) and raw[2, 1] == 0.5


# -- refusals: nothing changes, the audit says why -----------------------------------------------------
def test_promote_with_an_empty_fleet_is_refused(settings: Settings) -> None:
    with pytest.raises(FleetError, match=r"the fleet is empty: add Triton gRPC endpoints"):
        rollout.promote(settings, "rf", 1, actor="alice")
    assert audit_of(settings) == [("promote", "started"), ("promote", "refused")]
    with StateStore.open(settings.state) as store:
        assert store.model("rf") is None
        assert store.unfinished_operations("rf") == []


def test_parity_gate_refuses_before_touching_the_fleet(settings: Settings) -> None:
    with_unreachable_fleet(settings)  # never contacted: the parity gate comes first
    with pytest.raises(GateError, match=r"version 3: parity gate refused it: .*label agreement 0.9100, required 1.0"):
        rollout.promote(settings, "rf", 3, actor="alice", reason="try")
    assert audit_of(settings)[-1] == ("promote", "refused")


def test_unreachable_endpoint_refuses_the_promotion(settings: Settings) -> None:
    endpoint = with_unreachable_fleet(settings)
    with pytest.raises(EndpointUnreachableError, match=rf"endpoint {endpoint} is unreachable"):
        rollout.promote(settings, "rf", 1, actor="alice")
    with StateStore.open(settings.state) as store:
        assert store.model("rf") is None
        (event,) = [e for e in store.audit("rf") if e.result == "refused"]
        assert endpoint in event.detail and event.actor == "alice" and event.to_version == 1


def test_unknown_version_is_refused(settings: Settings) -> None:
    with_unreachable_fleet(settings)
    with pytest.raises(UnknownVersionError, match=r"'rf' version 7: no directory"):
        rollout.promote(settings, "rf", 7, actor="alice")
    assert audit_of(settings)[-1] == ("promote", "refused")


def test_a_second_concurrent_rollout_is_refused_and_audited(settings: Settings) -> None:
    refused = pytest.raises(RolloutInProgressError, match=r"another rollout is in progress \(promote by alice")
    with StateStore.open(settings.state) as store, store.rollout_lock("rf", "promote by alice"), refused:
        rollout.promote(settings, "rf", 2, actor="bob")
    with StateStore.open(settings.state) as store:
        (event,) = store.audit("rf")
        assert (event.actor, event.action, event.result, event.to_version) == ("bob", "promote", "refused", 2)


def test_preconditions_of_each_action(settings: Settings) -> None:
    with_unreachable_fleet(settings)
    with pytest.raises(InvalidRolloutError, match=r"canary weight: expected a number in \(0, 1\], got 1.5"):
        rollout.canary(settings, "rf", 2, 1.5, actor="alice")
    with pytest.raises(InvalidRolloutError, match=r"'rf' has no live version; promote one first"):
        rollout.deploy(settings, "rf", 2, actor="alice")
    with pytest.raises(InvalidRolloutError, match=r"no live version to roll back from"):
        rollout.rollback(settings, "rf", actor="alice")
    with pytest.raises(InvalidRolloutError, match=r"no candidate or canary to abort"):
        rollout.abort_canary(settings, "rf", actor="alice")
    with StateStore.open(settings.state) as store:
        store.set_live("rf", 1, AuditEntry("alice", "promote", "rf", None, 1, "", "ok"))
    with pytest.raises(InvalidRolloutError, match=r"no earlier live version to roll back to; name one with --to"):
        rollout.rollback(settings, "rf", actor="alice")
    with pytest.raises(InvalidRolloutError, match=r"version 1 is already live"):
        rollout.promote(settings, "rf", 1, actor="alice")
    with pytest.raises(GateError, match=r"parity gate"):
        rollout.rollback(settings, "rf", to=3, actor="alice")
    with StateStore.open(settings.state) as store:
        assert store.model("rf") == ModelState("rf", 1, None, 0.0)
        assert store.unfinished_operations("rf") == []
    assert {result for _, result in audit_of(settings)} == {"started", "refused", "ok"}


def test_history_and_status_of_an_unknown_model(settings: Settings) -> None:
    StateStore.open(settings.state).close()  # a state that never heard of the model
    with pytest.raises(UnknownModelError, match=r"model 'nope' is not known to the control plane state"):
        rollout.history(settings, "nope")
    with pytest.raises(UnknownModelError, match=r"model 'nope' is not known"):
        rollout.status(settings, "nope")


def test_reads_without_a_state_file_create_none(tmp_path: Path) -> None:
    settings = Settings(repository=tmp_path / "repo", state_path=tmp_path / "nowhere" / "state.db", admin_token=None)
    for read in (
        lambda: rollout.history(settings, "rf"),
        lambda: rollout.status(settings),
        lambda: rollout.fleet_list(settings),
        lambda: rollout.fleet_remove(settings, "127.0.0.1:8001", actor="alice"),
    ):
        with pytest.raises(NoStateError, match=rf"no control plane state at {tmp_path / 'nowhere' / 'state.db'}"):
            read()
    assert list(tmp_path.iterdir()) == []


def test_the_admin_token_never_reaches_the_audit_log(settings: Settings) -> None:
    with_unreachable_fleet(settings)
    for action in (
        lambda: rollout.promote(settings, "rf", 1, actor="alice", reason="ship"),
        lambda: rollout.promote(settings, "rf", 3, actor="alice"),
        lambda: rollout.rollback(settings, "rf", actor="alice"),
    ):
        with pytest.raises(TritonOpsError):
            action()
    with StateStore.open(settings.state) as store:  # every row of every table, as text
        tables = [t for (t,) in store.db.execute(TABLES_SQL[store.db.engine]).fetchall()]
        dump = repr([store.db.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    assert len(tables) >= 8 and "alice" in dump
    assert TOKEN not in dump
    assert TOKEN not in repr(settings)

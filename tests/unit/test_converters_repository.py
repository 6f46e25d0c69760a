"""The repository writer: layout, Triton-parsable configs, distinct versions under concurrency, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from google.protobuf import text_format
from sklearn.linear_model import LogisticRegression
from tritonclient.grpc import model_config_pb2

from examples.data import sensor_frame
from tritonops.converters import (
    ConversionOptions,
    ModelVersion,
    RepositoryError,
    convert_sklearn,
    list_models,
    list_versions,
    load_manifest,
)
from tritonops.converters.repository import VersionContent, publish_live, write_version
from tritonops.model_config import ServingOptions

ROOT = Path(__file__).resolve().parents[2]

# A writer in its own process: re-publishes version 1's files as the next version, `count` times.
WRITER = textwrap.dedent(
    """
    import sys, json
    from pathlib import Path
    from tritonops.converters.repository import VersionContent, write_version
    repo, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    first = repo / name / "1"
    files = {p.name: p.read_bytes() for p in first.iterdir()}
    def render(version):
        manifest = json.loads(files["manifest.json"])
        manifest["version"] = version
        return VersionContent({**files, "manifest.json": json.dumps(manifest).encode()}, files["config.pbtxt"])
    for _ in range(count):
        print(write_version(repo, name, render).version, flush=True)
    """
)


@pytest.fixture(scope="module")
def first_version(tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    data = sensor_frame(n_rows=150, n_features=4, seed=3)
    model = LogisticRegression(max_iter=500).fit(data.frame, data.labels)
    repository = tmp_path_factory.mktemp("repository")
    serving = ServingOptions(max_batch_size=64, preferred_batch_sizes=(8, 32), response_cache=True)
    options = ConversionOptions(serving=serving)
    return convert_sklearn(model, data.frame, name="sensor", repository=repository, options=options)


def _content_from(version: ModelVersion) -> tuple[dict[str, bytes], bytes]:
    files = {p.name: p.read_bytes() for p in version.path.iterdir()}
    return files, files["config.pbtxt"]


def _renderer(version: ModelVersion) -> Callable[[int], VersionContent]:
    files, config = _content_from(version)

    def render(number: int) -> VersionContent:
        manifest = json.loads(files["manifest.json"])
        manifest["version"] = number
        return VersionContent({**files, "manifest.json": json.dumps(manifest).encode()}, config)

    return render


def test_layout_and_labels_file(first_version: ModelVersion) -> None:
    repository = first_version.path.parents[1]
    assert first_version.version == 1
    assert sorted(p.name for p in first_version.path.iterdir()) == [
        "config.pbtxt",
        "labels.txt",
        "manifest.json",
        "model.onnx",
    ]
    assert (first_version.path / "labels.txt").read_text() == "alpha\nbeta\ngamma\n"
    native = repository / "sensor__onnxruntime"
    assert sorted(p.name for p in (native / "1").iterdir()) == ["config.pbtxt", "labels.txt", "model.onnx"]
    assert (native / "1" / "model.onnx").read_bytes() == first_version.model_path.read_bytes()
    assert list_models(repository) == ["sensor"]
    assert load_manifest(first_version.path).onnx.sha256 == first_version.manifest.onnx.sha256


def test_embedded_config_parses_with_model_config_pb2(first_version: ModelVersion) -> None:
    config = text_format.Parse(first_version.config_path.read_text(), model_config_pb2.ModelConfig())
    assert config.name == "sensor"
    assert config.backend == "tritonops"
    assert config.max_batch_size == 64
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 32]
    assert not config.HasField("response_cache")  # repeated inputs are cached by our backend instead
    assert config.parameters["tritonops.response_cache_entries"].string_value == "4096"
    # [-1] columns: a wrong feature count reaches our backend (named + counted) instead of Triton's silent shape check
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("input", model_config_pb2.TYPE_FP32, [-1])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("label", model_config_pb2.TYPE_STRING, [1]),
        ("probabilities", model_config_pb2.TYPE_FP32, [3]),
    ]
    assert config.output[1].label_filename == "1/labels.txt"
    assert config.parameters["tritonops.version"].string_value == "1"
    signature = json.loads(config.parameters["tritonops.signature"].string_value)
    assert signature["classes"] == ["alpha", "beta", "gamma"]
    assert [f["column"] for f in signature["features"]] == [0, 1, 2, 3]


def _model_level(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_a_never_promoted_model_has_a_placeholder_no_triton_loads(first_version: ModelVersion) -> None:
    """Before any promote the model-level configs name an empty ``specific`` policy: Triton refuses to load them
    ("at least one version must be available"), so a stock Triton can't serve an unpromoted version by accident."""
    repository = first_version.path.parents[1]
    for model_dir, version_config in (
        (repository / "sensor", first_version.config_path),
        (repository / "sensor__onnxruntime", repository / "sensor__onnxruntime" / "1" / "config.pbtxt"),
    ):
        placeholder = _model_level(model_dir / "config.pbtxt")
        assert placeholder.version_policy.WhichOneof("policy_choice") == "specific"
        assert list(placeholder.version_policy.specific.versions) == []
        assert "specific {\n  }" in (model_dir / "config.pbtxt").read_text()
        expected = _model_level(version_config)
        placeholder.ClearField("version_policy")
        assert placeholder == expected  # otherwise the version's own config


def test_publish_live_points_the_model_level_configs_at_one_version_and_new_versions_leave_them(
    first_version: ModelVersion, tmp_path: Path
) -> None:
    import shutil

    repository = tmp_path / "repo"
    shutil.copytree(first_version.path.parents[1], repository)
    embedded, native = repository / "sensor" / "config.pbtxt", repository / "sensor__onnxruntime" / "config.pbtxt"
    assert publish_live(repository, "sensor", 1) == [embedded, native]
    for path in (embedded, native):
        assert list(_model_level(path).version_policy.specific.versions) == [1]
    assert _model_level(native).output[1].label_filename == "1/labels.txt"
    assert publish_live(repository, "sensor", 1) == []  # already right: not rewritten
    second = write_version(repository, "sensor", _renderer(first_version))  # (no native export of this one)
    assert second.version == 2
    assert list(_model_level(embedded).version_policy.specific.versions) == [1]  # a new version changes nothing
    assert publish_live(repository, "sensor", 2) == [embedded]
    assert list(_model_level(embedded).version_policy.specific.versions) == [2]
    assert _model_level(embedded).output[1].label_filename == "1/labels.txt"  # v2 reused v1's files here
    assert publish_live(repository, "sensor", 1) == [embedded]  # a rollback
    assert list(_model_level(embedded).version_policy.specific.versions) == [1]
    assert not list((repository / "sensor").glob(".tmp-*"))  # replaced atomically, no temp file left
    with pytest.raises(RepositoryError, match=r"cannot publish 'sensor' version 9: .*9/config.pbtxt is missing"):
        publish_live(repository, "sensor", 9)


def test_native_export_config_parses_with_model_config_pb2(first_version: ModelVersion) -> None:
    path = first_version.path.parents[1] / "sensor__onnxruntime" / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    assert config.name == "sensor__onnxruntime"
    assert config.platform == "onnxruntime_onnx"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP32"
    assert [o.name for o in config.output] == ["label", "probabilities"]


def test_concurrent_writer_processes_get_distinct_versions(first_version: ModelVersion, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    (repository / "sensor").mkdir(parents=True)
    os.symlink(first_version.path, repository / "sensor" / "1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(repository), "sensor", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    numbers: list[int] = []
    for writer in writers:
        out, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
        numbers.extend(int(line) for line in out.split())
    assert sorted(numbers) == list(range(2, 18))
    versions = list_versions(repository, "sensor")
    assert [v.version for v in versions] == list(range(1, 18))
    assert all(v.manifest.version == v.version for v in versions)
    assert not list((repository / "sensor").glob(".tmp-*"))


class _InterruptedFiles(Mapping[str, bytes]):
    """Files whose third write is interrupted as a Ctrl-C would interrupt it."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self._files = files

    def __getitem__(self, key: str) -> bytes:
        return self._files[key]

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[str]:
        for i, name in enumerate(self._files):
            if i == 2:
                raise KeyboardInterrupt
            yield name


def test_ctrl_c_while_writing_leaves_no_version_and_no_temp(first_version: ModelVersion, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    (repository / "sensor").mkdir(parents=True)
    os.symlink(first_version.path, repository / "sensor" / "1")
    files, config = _content_from(first_version)
    before = sorted(p.name for p in (repository / "sensor").iterdir())
    with pytest.raises(KeyboardInterrupt):
        write_version(repository, "sensor", lambda v: VersionContent(_InterruptedFiles(files), config))
    assert sorted(p.name for p in (repository / "sensor").iterdir()) == sorted([*before, ".lock"])
    assert write_version(repository, "sensor", _renderer(first_version)).version == 2


def test_killed_writer_leaves_only_a_temp_dir_that_the_next_writer_removes(
    first_version: ModelVersion, tmp_path: Path
) -> None:
    repository = tmp_path / "repo"
    (repository / "sensor").mkdir(parents=True)
    os.symlink(first_version.path, repository / "sensor" / "1")
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from tritonops.converters.repository import VersionContent, publish_live, write_version
        class Slow(dict):
            def __iter__(self):
                yield "model.onnx"
                print("writing", flush=True)
                time.sleep(60)
        write_version(Path(sys.argv[1]), "sensor", lambda v: VersionContent(Slow({"model.onnx": b"x" * 1000}), b""))
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(repository)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)  # a crash: no cleanup code runs
        child.wait(timeout=10)
    leftovers = list((repository / "sensor").glob(".tmp-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "model.onnx").exists()
    assert [v.version for v in list_versions(repository, "sensor")] == [1]
    assert write_version(repository, "sensor", _renderer(first_version)).version == 2
    assert not list((repository / "sensor").glob(".tmp-*"))


@pytest.mark.parametrize("name", ["", "1model", "has space", "a__b", "x" * 64, "dot.name"])
def test_bad_model_names_are_refused_before_writing(name: str, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="is not allowed"):
        write_version(tmp_path, name, lambda v: VersionContent({}, b""))
    assert list(tmp_path.iterdir()) == []


def test_listing_a_model_without_versions_names_the_place(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="has no versions"):
        list_versions(tmp_path, "ghost")
    with pytest.raises(RepositoryError, match="does not exist"):
        list_models(tmp_path / "nowhere")

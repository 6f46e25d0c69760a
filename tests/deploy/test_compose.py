"""docker-compose.yml validates with a real compose implementation (docker-compose 1.29 `config`, no engine
needed), names the images we mean, runs two controllers on one PostgreSQL, and every bind mount points at something
in the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = ROOT / ".venv-tools" / "bin" / "docker-compose"


def _config(compose_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert DOCKER_COMPOSE.is_file(), "docker-compose not installed: run `make setup` (.venv-tools)"
    return subprocess.run(
        [str(DOCKER_COMPOSE), "--project-directory", str(ROOT), "-f", str(compose_file), *extra, "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, paths absolute), every profile on."""
    result = _config(COMPOSE_FILE, "--profile", "native")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """``{target: source}`` of a resolved service (docker-compose 1.29 prints ``source:target:mode``)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def test_services(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {
        "triton",
        "triton-native",
        "postgres",
        "controller-a",
        "controller-b",
        "prometheus",
        "alertmanager",
        "grafana",
    }


def test_alertmanager_gets_our_config_and_its_token_as_a_secret(resolved: dict[str, Any]) -> None:
    alertmanager = resolved["services"]["alertmanager"]
    config = Path(_mounts(alertmanager)["/etc/alertmanager"]) / "alertmanager.yml"
    loaded = yaml.safe_load(config.read_text())
    (hook,) = loaded["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://controller:8080/v1/hooks/alertmanager"
    for name in ("controller-a", "controller-b"):  # `controller` names both replicas: either one takes the hook
        assert resolved["services"][name]["networks"]["default"]["aliases"] == ["controller"]
    assert {"controller-a", "controller-b"} <= set(alertmanager["depends_on"])
    (secret,) = alertmanager["secrets"]
    assert hook["http_config"]["authorization"]["credentials_file"] == f"/run/secrets/{secret['source']}"


def test_triton_is_our_gpu_image_with_a_gpu_and_a_locked_admin_api(resolved: dict[str, Any]) -> None:
    triton = resolved["services"]["triton"]
    assert triton["build"]["dockerfile"] == "deploy/docker/triton-gpu.Dockerfile"
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert triton["environment"]["TRITONOPS_ADMIN_TOKEN_FILE"] == "/run/secrets/tritonops_admin_token"
    assert [s["source"] for s in triton["secrets"]] == ["tritonops_admin_token"]
    # the metrics port is not published outside the compose network
    published = {str(p["target"]) for p in triton["ports"]}
    assert published == {"8000", "8001"}


def test_gpu_dockerfile_builds_on_the_ngc_image_of_our_triton_release() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "triton-gpu.Dockerfile").read_text(encoding="utf-8")
    # NGC 24.10 ships Triton 2.51.0, the release inside nvidia-pytriton 0.7.0 (the tested pin in constraints.txt).
    assert "ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3" in dockerfile
    assert "nvidia-pytriton==0.7.0\n" in (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert "pip install -c constraints.txt '.[server,postgresql]'" in dockerfile
    assert "onnxruntime-gpu==" in dockerfile and "pip uninstall -y onnxruntime" in dockerfile
    # the 3.11 stub of the same Triton release, our backend beside NGC's, and the entrypoint tests/deploy runs
    assert "python_backend_stubs/3.11/triton_python_backend_stub" in dockerfile
    assert "cp serving/backend/tritonops/model.py /opt/tritonserver/backends/tritonops/model.py" in dockerfile
    assert (ROOT / "serving" / "backend" / "tritonops" / "model.py").is_file()
    assert "COPY deploy/docker/triton-entrypoint.sh /usr/local/bin/tritonops-triton" in dockerfile
    assert 'ENTRYPOINT ["/usr/local/bin/tritonops-triton"]' in dockerfile
    for package in ("tritonops", "converters", "serving", "control_plane", "clients"):
        assert f"COPY {package} ./{package}" in dockerfile
        assert (ROOT / package).is_dir()


def test_native_variant_uses_the_stock_ngc_image(resolved: dict[str, Any]) -> None:
    native = resolved["services"]["triton-native"]
    assert native["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert native["profiles"] == ["native"]
    command = " ".join(native["command"])
    assert "--grpc-restricted-protocol=model-repository:admin-key=" in command
    assert "--metrics-config=summary_latencies=true" in command


def test_images_are_pinned(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: image {image} is not pinned"


def test_bind_mounts_exist_in_the_repository(resolved: dict[str, Any]) -> None:
    sources = [
        Path(source)
        for service in resolved["services"].values()
        for source in _mounts(service).values()
        if source.startswith("/")  # named volumes keep their name
    ]
    assert sources, "no bind mounts found"
    for source in sources:
        assert source.is_relative_to(ROOT), source
        assert source.exists(), f"{source} is mounted but missing"
    mounted = {s.relative_to(ROOT).as_posix() for s in sources}
    assert {"model_repository", "deploy/prometheus", "deploy/grafana/provisioning", "deploy/grafana/dashboards"} <= (
        mounted
    )


def test_prometheus_and_grafana_get_our_files(resolved: dict[str, Any]) -> None:
    prometheus = resolved["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert Path(_mounts(prometheus)["/etc/prometheus"]) == ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    scraped = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"triton:8002", "controller-a:8080", "controller-b:8080"} <= scraped  # each replica's own /metrics
    assert "8002" in resolved["services"]["triton"]["expose"]
    published = {
        str(p["published"]) for name in ("controller-a", "controller-b") for p in resolved["services"][name]["ports"]
    }
    assert published == {"8080", "8081"}
    assert "ports" not in resolved["services"]["postgres"]
    grafana = _mounts(resolved["services"]["grafana"])
    assert (Path(grafana["/var/lib/grafana/dashboards"]) / "tritonops.json").is_file()


@pytest.mark.parametrize(
    "secret",
    [
        "tritonops_admin_token",
        "tritonops_bootstrap_token",
        "tritonops_alertmanager_token",
        "tritonops_postgres_password",
        "tritonops_postgres_reader_password",
    ],
)
def test_secret_files_are_git_ignored(resolved: dict[str, Any], secret: str) -> None:
    path = Path(resolved["secrets"][secret]["file"])
    assert path.parent.is_dir()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True, check=False)
    assert ignored.returncode == 0, f"{path} would be committed"


def test_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validator is real: a wrong type under a service fails `config`."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text(encoding="utf-8").replace("shm_size: 1gb", "shm_size: [1gb]", 1)
    broken.write_text(text, encoding="utf-8")
    result = _config(broken)
    assert result.returncode != 0
    assert "shm_size" in result.stderr


def test_two_controllers_share_one_postgresql_with_secrets_from_files(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    controllers = {name: services[name] for name in services if name.startswith("controller")}
    assert sorted(controllers) == ["controller-a", "controller-b"]
    replicas = []
    for controller in controllers.values():
        env = controller["environment"]
        assert env["TRITONOPS_FLEET"] == "dns:triton:8001"
        assert env["TRITONOPS_STATE"] == "postgresql://tritonops@postgres:5432/tritonops"
        assert env["TRITONOPS_STATE_PASSWORD_FILE"] == "/run/secrets/tritonops_postgres_password"
        assert env["TRITONOPS_ADMIN_TOKEN_FILE"] == "/run/secrets/tritonops_admin_token"
        assert env["TRITONOPS_BOOTSTRAP_TOKEN_FILE"] == "/run/secrets/tritonops_bootstrap_token"
        assert env["TRITONOPS_PROMETHEUS_URL"] == "http://prometheus:9090"  # the compose Prometheus, by service name
        assert {s["source"] for s in controller["secrets"]} == {
            "tritonops_admin_token",
            "tritonops_bootstrap_token",
            "tritonops_postgres_password",
        }
        assert "/var/lib/tritonops" not in _mounts(controller)  # no SQLite state
        assert "/readyz" in " ".join(controller["healthcheck"]["test"])
        assert controller["depends_on"]["triton"]["condition"] == "service_healthy"
        assert controller["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "entrypoint" not in controller  # the image's `tritonops controller start`; command = its flags
        command = controller["command"]
        replicas.append(command[command.index("--replica") + 1])
    assert replicas == list(controllers)  # each its own name in the lease and the audit log
    assert [p["target"] for p in services["prometheus"]["ports"]] == [9090]
    postgres = services["postgres"]
    env = postgres["environment"]
    assert env["POSTGRES_USER"] == "tritonops" and env["POSTGRES_DB"] == "tritonops"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/tritonops_postgres_password"
    assert env["TRITONOPS_READER_PASSWORD_FILE"] == "/run/secrets/tritonops_postgres_reader_password"
    assert {s["source"] for s in postgres["secrets"]} == {
        "tritonops_postgres_password",
        "tritonops_postgres_reader_password",
    }
    init = Path(_mounts(postgres)["/docker-entrypoint-initdb.d/10-reader.sh"])
    assert init == ROOT / "deploy" / "ha" / "postgres-init-reader.sh"
    assert _mounts(postgres)["/var/lib/postgresql/data"] == "postgres-data"
    assert "TRITONOPS_ADMIN_TOKEN_FILE" in services["triton"]["environment"]
    assert not any("TOKEN" in name for name in services["grafana"].get("environment", {}))
    dockerfile = (ROOT / "deploy" / "docker" / "control-plane.Dockerfile").read_text(encoding="utf-8")
    entrypoint = 'ENTRYPOINT ["tritonops", "controller", "start", "--host", "0.0.0.0", "--port", "8080"]'
    assert entrypoint in dockerfile and "pip install -c constraints.txt '.[controller,convert]'" in dockerfile
    assert "entrypoint.sh" not in dockerfile and "/healthz" in dockerfile

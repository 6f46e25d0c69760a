"""deploy/ha run for real on this machine: two `tritonops controller start` processes with the env and args of
deploy/ha/controller.yaml (and the image's ENTRYPOINT) on one real PostgreSQL prepared by deploy/ha/postgres-init-
reader.sh, and the readiness probe of deploy/ha/triton.yaml run as written against a real tritonserver, with the
Triton pod's env (the read-only role). Everything is read out of the manifests, so the test fails when they drift.

What stands in for Kubernetes, said here: secret volumes are folders of files, the Service addresses are
127.0.0.1 ports, `postgres:5432` is the throwaway cluster, and the fleet is the static list (the headless-Service
DNS name of the manifest is checked in test_k8s.py; DNS discovery itself has its own test with a real dnsmasq).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml

from examples.train import train_numeric_pipeline
from tests.deploy.conftest import DEPLOY
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.loadtest.postgres import PostgresCluster, postgresql_bin
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
TOKEN = "tops_" + secrets.token_hex(21)
MODEL = "rf"


def _docs(path: Path) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d}


CONTROLLER = _docs(DEPLOY / "ha" / "controller.yaml")["Deployment"]
TRITON = _docs(DEPLOY / "ha" / "triton.yaml")["StatefulSet"]
POSTGRES = _docs(DEPLOY / "ha" / "postgres.yaml")["StatefulSet"]


def _entrypoint() -> list[str]:
    dockerfile = (DEPLOY / "docker" / "control-plane.Dockerfile").read_text(encoding="utf-8")
    (line,) = [line for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT ")]
    entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
    return entrypoint


@dataclass
class Cluster:
    """The stand-ins: PostgreSQL, one Triton, secret folders; the controllers started from the manifest."""

    root: Path
    postgres: PostgresCluster
    triton: TritonServer
    secrets: dict[str, dict[str, str]]
    controllers: dict[str, tuple[subprocess.Popen[bytes], int]] = field(default_factory=dict)
    others: list[TritonServer] = field(default_factory=list)

    def _postgres(self, value: str) -> str:
        return value.replace("@postgres:5432/", f"@127.0.0.1:{self.postgres.port}/")

    def pod_env(self, pod: dict[str, Any], name: str) -> dict[str, str]:
        """The container's env as Kubernetes gives it: secret volumes as folders, /models as the repository."""
        spec = pod["spec"]["template"]["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        paths: dict[str, str] = {}
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "secret" in volume:
                folder = self.root / name / mount["name"]
                folder.mkdir(parents=True, exist_ok=True)
                data = self.secrets[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (folder / item["path"]).write_text(data[item["key"]], encoding="utf-8")
                paths[mount["mountPath"]] = str(folder)
            elif volume.get("persistentVolumeClaim", {}).get("claimName") == "tritonops-models":
                paths[mount["mountPath"]] = str(self.triton.options.model_repository)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
        for variable in container["env"]:
            if "valueFrom" in variable:
                assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, variable
                env[variable["name"]] = name
                continue
            value = self._postgres(variable["value"])
            for mount_path, local in paths.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    value = local + value[len(mount_path) :]
            env[variable["name"]] = value
        return env

    def start_controller(self, name: str) -> None:
        container = CONTROLLER["spec"]["template"]["spec"]["containers"][0]
        env = self.pod_env(CONTROLLER, name)
        # the static fleet instead of the headless Service's DNS name (this machine has no cluster DNS)
        assert env.pop("TRITONOPS_FLEET").startswith("dns:triton-headless.")
        port = free_port()
        argv = _entrypoint()
        assert argv[:3] == ["tritonops", "controller", "start"]
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(port)
        argv += [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.controllers[name] = (process, port)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.controllers[name][1]}"

    def readyz(self, name: str) -> requests.Response:
        return requests.get(self.url(name) + "/readyz", timeout=10)

    def probe(self, triton: TritonServer | None = None) -> subprocess.CompletedProcess[str]:
        """The Triton pod's readiness probe as written, on a Triton's ports, with the pod's env."""
        triton = triton or self.triton
        container = TRITON["spec"]["template"]["spec"]["containers"][0]
        command = list(container["readinessProbe"]["exec"]["command"])
        command[-1] = command[-1].replace("127.0.0.1:8001", triton.grpc_url)
        command[-1] = command[-1].replace("127.0.0.1:8000", triton.http_url)
        env = self.pod_env(TRITON, "triton-0")
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        # the manifest's timeoutSeconds is for a pod's own CPUs; this shared machine gets 4 times that
        timeout = 4 * container["readinessProbe"]["timeoutSeconds"]
        started = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        print(f"probe of {triton.grpc_url}: exit {done.returncode} in {time.monotonic() - started:.1f} s")
        return done


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("ha_layout")
    repository = root / "repository"
    options = ConversionOptions(serving=ServingOptions(instance_count=1), parity_rows=100, native_export=False)
    trained = train_numeric_pipeline(n_rows=200, n_features=8, seed=0)
    convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository, options=options)
    with PostgresCluster() as postgres:
        env = {e["name"]: e.get("value") for e in POSTGRES["spec"]["template"]["spec"]["containers"][0]["env"]}
        owner, database = env["POSTGRES_USER"], env["POSTGRES_DB"]
        assert owner == "tritonops"  # the throwaway cluster's superuser has the manifest's owner name
        with postgres.connect() as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        reader_password = secrets.token_urlsafe(16)
        init = subprocess.run(
            ["sh", str(DEPLOY / "ha" / "postgres-init-reader.sh")],
            env={
                "PATH": f"{postgresql_bin()}{os.pathsep}{os.environ['PATH']}",
                "POSTGRES_USER": owner,
                "POSTGRES_DB": database,
                "TRITONOPS_READER_PASSWORD": reader_password,
                "PGHOST": "127.0.0.1",
                "PGPORT": str(postgres.port),
                "PGPASSWORD": postgres.password,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        triton = TritonServer(ServerOptions(model_repository=repository, work_dir=root / "triton")).start()
        built = Cluster(
            root,
            postgres,
            triton,
            {
                "tritonops-postgres": {"password": postgres.password, "reader_password": reader_password},
                "tritonops-admin-token": {"admin_token": secrets.token_hex(24)},
                "tritonops-bootstrap-token": {"bootstrap_token": TOKEN},
            },
        )
        try:
            for name in ("tritonops-controller-a", "tritonops-controller-b"):  # both at once, as a Deployment does
                built.start_controller(name)
            yield built
        finally:
            for process, _ in built.controllers.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
            for server in [triton, *built.others]:
                server.stop()


def _wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _leadership(cluster: Cluster) -> dict[str, dict[str, Any]]:
    answers = {name: cluster.readyz(name) for name in cluster.controllers}
    assert all(a.status_code == 200 for a in answers.values()), {n: a.text for n, a in answers.items()}
    return {name: a.json()["leadership"] for name, a in answers.items()}


def test_exactly_one_replica_leads_and_both_are_ready(cluster: Cluster) -> None:
    """Both answer /readyz 200 (the probe keeps both in the Service), agree on the leader, one says it leads."""
    for name, (process, _) in cluster.controllers.items():
        url = cluster.url(name) + "/healthz"
        _wait(f"{name} /healthz", lambda url=url: requests.get(url, timeout=2).ok)  # type: ignore[misc]
        assert process.poll() is None, (cluster.root / f"{name}.log").read_text()

    def led() -> dict[str, dict[str, Any]] | None:
        seen = _leadership(cluster)
        return seen if all(s["leader"] for s in seen.values()) else None

    seen = _wait("a leader", led)
    leaders = {s["leader"] for s in seen.values()}
    assert len(leaders) == 1 and leaders <= set(cluster.controllers), seen  # the pod names, from $(POD_NAME)
    assert sorted(s["this_replica_leads"] for s in seen.values()) == [False, True], seen
    (leader,) = leaders
    assert seen[leader]["this_replica_leads"] is True
    for name in cluster.controllers:  # the bootstrap token, stored once, works on both
        who = requests.get(cluster.url(name) + "/v1/whoami", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert who.status_code == 200 and who.json()["role"] == "admin", who.text


def test_a_triton_pod_is_ready_only_once_the_leader_has_loaded_its_models(cluster: Cluster) -> None:
    """Triton A in the fleet, the model promoted through the follower. A new pod (Triton B) comes up: its probe (as
    the reader role) fails until B is in the fleet (as discovery adds it); then the leader loads the model on B and
    B's probe passes."""
    follower = next(n for n, s in _leadership(cluster).items() if not s["this_replica_leads"])
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def post(path: str, body: dict[str, object], status: int) -> None:
        answer = requests.post(f"{cluster.url(follower)}/v1{path}", json=body, headers=headers, timeout=120)
        assert answer.status_code == status, answer.text

    post("/fleet", {"endpoint": cluster.triton.grpc_url}, 201)
    post(f"/models/{MODEL}/promote", {"version": 1}, 200)
    assert cluster.probe().returncode == 0
    repository = cluster.triton.options.model_repository
    new_pod = TritonServer(ServerOptions(model_repository=repository, work_dir=cluster.root / "triton-b")).start()
    cluster.others.append(new_pod)
    probe = cluster.probe(new_pod)
    output = probe.stdout + probe.stderr
    assert probe.returncode != 0, output
    assert f"{new_pod.grpc_url} does not serve the desired state yet" in output and f"{MODEL}: not loaded" in output
    post("/fleet", {"endpoint": new_pod.grpc_url}, 201)
    assert _wait("the new pod's probe to pass", lambda: cluster.probe(new_pod).returncode == 0, timeout=90)
    ready = requests.get(f"http://{new_pod.http_url}/v2/models/{MODEL}/versions/1/ready", timeout=5)
    assert ready.status_code == 200


def test_only_the_leader_exports_its_judgments(cluster: Cluster) -> None:
    """Prometheus scrapes each replica (the headless Service): the leader's page has the live version and
    tritonops_controller_leader 1, the follower's has 0 and no version series, so a sum over replicas is the
    leader's view and nothing flips between scrapes. Runs after the promote above."""
    roles = {n: s["this_replica_leads"] for n, s in _leadership(cluster).items()}

    def page(name: str) -> str:
        return requests.get(cluster.url(name) + "/metrics", timeout=10).text

    (leader,) = [n for n, leads in roles.items() if leads]
    (follower,) = [n for n, leads in roles.items() if not leads]
    live = f'tritonops_live_version{{model="{MODEL}"}} 1.0'
    _wait("the leader to export the live version", lambda: live in page(leader))
    assert "\ntritonops_controller_leader 1.0" in page(leader)
    seen = page(follower)
    assert "\ntritonops_controller_leader 0.0" in seen, seen
    assert "tritonops_live_version{" not in seen and "tritonops_guardrail_breached{" not in seen, seen


def test_the_reader_role_reads_and_cannot_write(cluster: Cluster) -> None:
    env = cluster.pod_env(TRITON, "triton-0")
    url = env["TRITONOPS_STATE"]
    password = Path(env["TRITONOPS_STATE_PASSWORD_FILE"]).read_text(encoding="utf-8")
    assert url.startswith("postgresql://tritonops_reader@")
    with psycopg.connect(url, password=password, autocommit=True) as reader:
        assert reader.execute("SELECT name, live_version FROM models").fetchall() == [(MODEL, 1)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("DELETE FROM models")


def test_without_the_database_triton_decides_and_the_controllers_are_not_ready(cluster: Cluster) -> None:
    """PostgreSQL gone: the probe falls back to Triton's own readiness (a database outage never empties the
    Service); both controllers answer /readyz 503 naming the state. Last in the module: it stops PostgreSQL."""
    cluster.postgres.stop()
    probe = cluster.probe()
    assert probe.returncode == 0, probe.stdout + probe.stderr
    for name in cluster.controllers:
        answer = cluster.readyz(name)
        assert answer.status_code == 503, answer.text
        assert answer.json()["checks"]["state"], answer.text
    cluster.triton.stop()
    probe = cluster.probe()
    assert probe.returncode != 0  # and with Triton down too, not ready

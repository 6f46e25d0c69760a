"""deploy/k8s, deploy/ha and deploy/single validate against the Kubernetes schemas (kubernetes-validate, strict),
and the pieces fit: N Triton replicas share the model repository, the controller (two replicas on PostgreSQL, or
one on SQLite) reconciles each one, a Triton pod's readiness probe runs real commands, Prometheus scrapes them.
kustomize itself is not run here (no kubectl in CI): the resources are gathered as it gathers them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
TRITONOPS = str(Path(sys.executable).parent / "tritonops")
LAYOUTS = ("ha", "single")
"""The components of deploy/kustomization.yaml: exactly one is listed (``ha``, the default)."""
KUBERNETES_VERSION = "1.37.0"
MANIFESTS = sorted(
    p.relative_to(DEPLOY).as_posix()
    for folder in (K8S, *(DEPLOY / layout for layout in LAYOUTS))
    for p in folder.glob("*.yaml")
    if p.name != "kustomization.yaml"
)
Resources = dict[tuple[str, str], dict[str, Any]]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _kustomization(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    return loaded


def layout_resources(layout: str) -> Resources:
    """What `kubectl apply -k deploy/` creates with ``layout`` as its component, keyed by (kind, name); an id twice
    is an error, as kustomize makes it."""
    found: Resources = {}
    base = _kustomization(DEPLOY)
    files = [DEPLOY / r for r in base["resources"]]
    files += [DEPLOY / layout / r for r in _kustomization(DEPLOY / layout)["resources"]]
    for path in files:
        for doc in _documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice ({path.relative_to(DEPLOY)})"
            found[key] = doc
    return found


@pytest.fixture(scope="module")
def resources() -> Resources:
    """The default layout's resources (deploy/kustomization.yaml as it is)."""
    (layout,) = _kustomization(DEPLOY)["components"]
    return layout_resources(layout)


@pytest.fixture(scope="module")
def single() -> Resources:
    return layout_resources("single")


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_matches_the_kubernetes_schema(manifest: str) -> None:
    docs = _documents(DEPLOY / manifest)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validator_rejects_a_wrong_field() -> None:
    """The validator is real: an unknown field and a wrong type are refused."""
    statefulset = _documents(DEPLOY / "ha" / "triton.yaml")[0]
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)
    statefulset = _documents(DEPLOY / "ha" / "triton.yaml")[0]
    statefulset["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_kustomizations_list_every_manifest_and_existing_files() -> None:
    """The base lists every file of k8s/ and one layout; each layout is a component listing its own files."""
    base = _kustomization(DEPLOY)
    assert {Path(r).name for r in base["resources"]} == {p.name for p in K8S.glob("*.yaml")}
    assert base["components"] == ["ha"]
    listed = [Path(r).as_posix() for r in base["resources"]]
    generators = list(base["configMapGenerator"])
    for layout in LAYOUTS:
        component = _kustomization(DEPLOY / layout)
        assert component["kind"] == "Component" and component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
        assert {p.name for p in (DEPLOY / layout).glob("*.yaml")} - {"kustomization.yaml"} == set(
            component["resources"]
        )
        listed += [f"{layout}/{r}" for r in component["resources"]]
        generators += [
            {**g, "files": [f"{layout}/{f}" for f in g["files"]]} for g in component.get("configMapGenerator", [])
        ]
    assert sorted(listed) == MANIFESTS
    for generator in generators:
        for entry in generator["files"]:
            source = entry.split("=", 1)[-1]
            assert (DEPLOY / source).is_file(), f"{generator['name']}: {source} missing"


def test_both_layouts_build_without_a_duplicate(single: Resources, resources: Resources) -> None:
    assert ("StatefulSet", "postgres") in resources and ("StatefulSet", "postgres") not in single
    assert ("PersistentVolumeClaim", "tritonops-state") in single
    assert ("PersistentVolumeClaim", "tritonops-state") not in resources
    shared = {k for k in resources if k[0] in ("Service", "Namespace", "ConfigMap")} & set(single)
    assert ("Service", "tritonops-controller") in shared and ("Service", "triton-headless") in shared


def test_triton_replicas_share_the_model_repository_and_each_get_a_gpu(resources: Resources) -> None:
    triton = resources[("StatefulSet", "triton")]
    pod = triton["spec"]["template"]["spec"]
    assert triton["spec"]["replicas"] >= 2
    claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert claim["claimName"] == "tritonops-models" and claim["readOnly"] is True
    assert "ReadWriteMany" in resources[("PersistentVolumeClaim", "tritonops-models")]["spec"]["accessModes"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRITONOPS_ADMIN_TOKEN_FILE"].startswith("/run/secrets/tritonops/")


def _without_readiness(statefulset: dict[str, Any]) -> dict[str, Any]:
    """The StatefulSet less what only the HA probe needs (its probes, the reader's state settings and secret)."""
    copy = yaml.safe_load(yaml.safe_dump(statefulset))
    pod = copy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        container.pop(probe, None)
    container["env"] = [e for e in container["env"] if not e["name"].startswith("TRITONOPS_STATE")]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "postgres-reader"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "postgres-reader"]
    return copy


def test_the_two_triton_statefulsets_differ_only_in_readiness(resources: Resources, single: Resources) -> None:
    ha, one = resources[("StatefulSet", "triton")], single[("StatefulSet", "triton")]
    assert _without_readiness(ha) == _without_readiness(one)
    probe = one["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/v2/health/ready"


def test_a_triton_pod_is_ready_when_it_serves_its_models_and_alive_on_its_own_health(resources: Resources) -> None:
    """The HA readiness probe runs `tritonops fleet ready` on this pod's gRPC port with the reader's credentials;
    startup and liveness stay on Triton's own endpoints, so waiting for models never restarts the pod."""
    pod = resources[("StatefulSet", "triton")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"] and command[2].startswith("tritonops fleet ready 127.0.0.1:8001 ||")
    assert "tritonops controller status" in command[2] and "127.0.0.1:8000/v2/health/ready" in command[2]
    assert container["readinessProbe"]["timeoutSeconds"] >= 20  # two state connections and a Triton call
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRITONOPS_STATE"] == "postgresql://tritonops_reader@postgres:5432/tritonops"
    assert env["TRITONOPS_REPOSITORY"] == "/models"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret = next(v for v in pod["volumes"] if v["name"] == "postgres-reader")["secret"]
    assert secret == {
        "secretName": "tritonops-postgres",
        "items": [{"key": "reader_password", "path": "reader_password"}],
    }
    assert env["TRITONOPS_STATE_PASSWORD_FILE"] == mounts["postgres-reader"] + "/reader_password"
    postgres = resources[("StatefulSet", "postgres")]["spec"]["template"]["spec"]["containers"][0]
    postgres_env = {e["name"]: e for e in postgres["env"]}
    assert postgres_env["TRITONOPS_READER_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "tritonops-postgres",
        "key": "reader_password",
    }
    assert "image" in container and "tritonops/triton-gpu" in container["image"]
    dockerfile = (DEPLOY / "docker" / "triton-gpu.Dockerfile").read_text(encoding="utf-8")
    assert "pip install -c constraints.txt '.[server,postgresql]'" in dockerfile  # psycopg for the probe


@pytest.mark.parametrize("words", [["fleet", "ready"], ["controller", "status"]])
def test_the_probe_runs_real_commands(resources: Resources, words: list[str]) -> None:
    """Each `tritonops ...` of the probe is a command of the CLI: its --help answers and names what it does."""
    command = resources[("StatefulSet", "triton")]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert "tritonops " + " ".join(words) in command["exec"]["command"][2]
    done = subprocess.run([TRITONOPS, *words, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("ENDPOINT" in done.stdout) if words == ["fleet", "ready"] else ("lead" in done.stdout)


def _prometheus_url(resources: Resources) -> str:
    """The in-cluster URL of the Prometheus Service (guardrail windows by PromQL)."""
    prometheus = resources[("Service", "prometheus")]
    (web,) = prometheus["spec"]["ports"]
    return f"http://prometheus.{prometheus['metadata']['namespace']}.svc.cluster.local:{web['port']}"


def test_the_ha_controller_runs_two_replicas_on_postgresql(resources: Resources) -> None:
    triton = resources[("StatefulSet", "triton")]
    headless = resources[("Service", triton["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True  # the controller must see a pod before it is Ready
    assert headless["spec"]["selector"].items() <= triton["spec"]["template"]["metadata"]["labels"].items()
    deployment = resources[("Deployment", "tritonops-controller")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tritonops-controller"
    assert ("ServiceAccount", "tritonops-controller") in resources
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    value = {name: e.get("value") for name, e in env.items()}
    assert value["TRITONOPS_FLEET"] == f"dns:{headless['metadata']['name']}.tritonops.svc.cluster.local:8001"
    assert value["TRITONOPS_STATE"] == "postgresql://tritonops@postgres:5432/tritonops"
    assert value["TRITONOPS_PROMETHEUS_URL"] == _prometheus_url(resources)
    assert ("Service", "postgres") in resources
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["args"][container["args"].index("--replica") + 1] == "$(POD_NAME)"
    assert "command" not in container  # the image's `tritonops controller start`, no shell loop
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "state" not in volumes  # no SQLite file
    assert volumes["postgres"]["secret"] == {
        "secretName": "tritonops-postgres",
        "items": [{"key": "password", "path": "password"}],
    }
    assert value["TRITONOPS_STATE_PASSWORD_FILE"] == mounts["postgres"] + "/password"
    for variable, volume, secret in (
        ("TRITONOPS_ADMIN_TOKEN_FILE", "admin-token", "tritonops-admin-token"),
        ("TRITONOPS_BOOTSTRAP_TOKEN_FILE", "bootstrap-token", "tritonops-bootstrap-token"),
    ):
        assert volumes[volume]["secret"]["secretName"] == secret
        assert str(value[variable]).startswith(mounts[volume] + "/")
    service = resources[("Service", "tritonops-controller")]
    assert service["spec"]["ports"] == [{"name": "api", "port": 8080, "targetPort": "api"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    budget = resources[("PodDisruptionBudget", "tritonops-controller")]["spec"]
    assert budget["minAvailable"] == 1 and budget["minAvailable"] < deployment["spec"]["replicas"]


def test_the_single_controller_runs_alone_on_sqlite(single: Resources) -> None:
    deployment = single[("Deployment", "tritonops-controller")]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "tritonops-state"
    assert mounts["state"] == "/var/lib/tritonops" and env["TRITONOPS_STATE"].startswith("/var/lib/tritonops/")
    assert env["TRITONOPS_PROMETHEUS_URL"] == _prometheus_url(single)
    assert ("PodDisruptionBudget", "tritonops-controller") not in single  # one pod: a budget would block drains


def test_prometheus_discovers_every_replica_through_the_headless_service(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    sd = jobs["triton"]["dns_sd_configs"][0]
    assert sd["names"] == ["triton-headless.tritonops.svc.cluster.local"] and sd["port"] == 8002
    replicas = resources[("Service", "tritonops-controller-replicas")]["spec"]
    controller = resources[("Service", "tritonops-controller")]["spec"]
    assert replicas["clusterIP"] == "None" and replicas["selector"] == controller["selector"]
    sd = jobs["tritonops-control-plane"]["dns_sd_configs"][0]  # each replica, not one of them at random
    assert sd["names"] == ["tritonops-controller-replicas.tritonops.svc.cluster.local"]
    assert sd["port"] == replicas["ports"][0]["port"] == controller["ports"][0]["port"]


def test_ha_pieces_fit_the_pods_they_protect(resources: Resources) -> None:
    """PostgreSQL takes its passwords from a Secret, runs the reader's init script and keeps its data on a claim; the
    controller's account may list EndpointSlices and nothing else; each disruption budget selects pods that exist."""
    postgres = resources[("StatefulSet", "postgres")]["spec"]
    container = postgres["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "tritonops-postgres", "key": "password"}
    assert env["POSTGRES_USER"]["value"] == "tritonops" and env["POSTGRES_DB"]["value"] == "tritonops"
    assert postgres["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    init = next(v for v in postgres["template"]["spec"]["volumes"] if v["name"] == "init")["configMap"]
    (generator,) = _kustomization(DEPLOY / "ha")["configMapGenerator"]
    assert init["name"] == generator["name"] and generator["files"] == ["postgres-init-reader.sh"]
    assert init["defaultMode"] == 0o555  # executed by the image's entrypoint, not sourced into it
    assert {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True} in container["volumeMounts"]
    role = resources[("Role", "tritonops-endpointslice-reader")]
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = resources[("RoleBinding", "tritonops-controller-endpointslices")]
    assert binding["roleRef"]["name"] == "tritonops-endpointslice-reader"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tritonops-controller", "namespace": "tritonops"}]
    pods = {
        "triton": resources[("StatefulSet", "triton")]["spec"]["template"]["metadata"]["labels"],
        "tritonops-controller": resources[("Deployment", "tritonops-controller")]["spec"]["template"]["metadata"][
            "labels"
        ],
    }
    for name, labels in pods.items():
        selector = resources[("PodDisruptionBudget", name)]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name

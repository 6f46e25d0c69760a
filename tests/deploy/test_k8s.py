"""deploy/k8s validates against the Kubernetes schemas (kubernetes-validate, strict), and the pieces fit:
N Triton replicas share the model repository, the control plane reconciles each one, Prometheus scrapes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.37.0"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource of deploy/kustomization.yaml, keyed by (kind, name)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    found = {}
    for relative in kustomization["resources"]:
        for doc in _documents(DEPLOY / relative):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


@pytest.mark.parametrize("manifest", sorted(p.name for p in K8S.glob("*.yaml")))
def test_manifest_matches_the_kubernetes_schema(manifest: str) -> None:
    docs = _documents(K8S / manifest)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validator_rejects_a_wrong_field() -> None:
    """The validator is real: an unknown field and a wrong type are refused."""
    statefulset = _documents(K8S / "triton.yaml")[0]
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)
    statefulset = _documents(K8S / "triton.yaml")[0]
    statefulset["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_existing_files() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    assert {Path(r).name for r in kustomization["resources"]} == {p.name for p in K8S.glob("*.yaml")}
    for generator in kustomization["configMapGenerator"]:
        for entry in generator["files"]:
            source = entry.split("=", 1)[-1]
            assert (DEPLOY / source).is_file(), f"{generator['name']}: {source} missing"


def test_triton_replicas_share_the_model_repository_and_each_get_a_gpu(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    triton = resources[("StatefulSet", "triton")]
    pod = triton["spec"]["template"]["spec"]
    assert triton["spec"]["replicas"] >= 2
    claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert claim["claimName"] == "tritonops-models" and claim["readOnly"] is True
    assert "ReadWriteMany" in resources[("PersistentVolumeClaim", "tritonops-models")]["spec"]["accessModes"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRITONOPS_ADMIN_TOKEN_FILE"].startswith("/run/secrets/tritonops/")


def test_the_controller_finds_every_replica_and_holds_the_secrets(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    triton = resources[("StatefulSet", "triton")]
    headless = resources[("Service", triton["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    deployment = resources[("Deployment", "tritonops-controller")]
    assert deployment["spec"]["replicas"] == 1  # SQLite: one writer
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRITONOPS_FLEET"] == f"dns:{headless['metadata']['name']}.tritonops.svc.cluster.local:8001"
    prometheus = resources[("Service", "prometheus")]
    (web,) = prometheus["spec"]["ports"]
    assert (
        env["TRITONOPS_PROMETHEUS_URL"]
        == f"http://prometheus.{prometheus['metadata']['namespace']}.svc.cluster.local:{web['port']}"
    )
    assert "command" not in container  # the image's `tritonops controller start`, no shell loop
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "tritonops-state"
    assert mounts["state"] == "/var/lib/tritonops" and env["TRITONOPS_STATE"].startswith("/var/lib/tritonops/")
    for variable, volume, secret in (
        ("TRITONOPS_ADMIN_TOKEN_FILE", "admin-token", "tritonops-admin-token"),
        ("TRITONOPS_BOOTSTRAP_TOKEN_FILE", "bootstrap-token", "tritonops-bootstrap-token"),
    ):
        assert volumes[volume]["secret"]["secretName"] == secret
        assert env[variable].startswith(mounts[volume] + "/")
    service = resources[("Service", "tritonops-controller")]
    assert service["spec"]["ports"] == [{"name": "api", "port": 8080, "targetPort": "api"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_prometheus_discovers_every_replica_through_the_headless_service(
    resources: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    sd = jobs["triton"]["dns_sd_configs"][0]
    assert sd["names"] == ["triton-headless.tritonops.svc.cluster.local"] and sd["port"] == 8002
    api = resources[("Service", "tritonops-controller")]["spec"]["ports"][0]["port"]
    assert jobs["tritonops-control-plane"]["static_configs"][0]["targets"] == [
        f"tritonops-controller.tritonops.svc.cluster.local:{api}"
    ]


def test_ha_pieces_fit_the_pods_they_protect(resources: dict[tuple[str, str], dict[str, Any]]) -> None:
    """PostgreSQL takes its password from a Secret and keeps its data on a claim; the controller's account may list
    EndpointSlices and nothing else; each disruption budget selects pods that exist (Triton, the control plane)."""
    postgres = resources[("StatefulSet", "postgres")]["spec"]
    env = {e["name"]: e for e in postgres["template"]["spec"]["containers"][0]["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "tritonops-postgres", "key": "password"}
    assert postgres["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
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

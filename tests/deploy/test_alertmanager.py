"""Alerts reach someone: both Prometheus configs send to Alertmanager, Alertmanager's config is valid (amtool) and
routes every alert to the controller's authenticated receiver, and each alert's runbook section exists."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.conftest import DEPLOY

CONFIGS = ["alertmanager.yml", "alertmanager-k8s.yml"]
OPERATIONS = DEPLOY.parent / "docs" / "operations.md"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("config", CONFIGS)
def test_alertmanager_config_is_valid(config: str) -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: run `make setup` (Debian package prometheus-alertmanager)"
    path = DEPLOY / "alertmanager" / config
    done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("name", CONFIGS)
def test_every_alert_reaches_the_controller_receiver_with_a_token_from_a_file(name: str) -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / name).read_text())
    route = config["route"]
    assert route["receiver"] == "tritonops-controller"
    first = route["routes"][0]
    assert first["receiver"] == "tritonops-controller" and first["continue"] is True and "matchers" not in first
    (receiver,) = [r for r in config["receivers"] if r["name"] == "tritonops-controller"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"].endswith("/v1/hooks/alertmanager") and hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and "credentials" not in auth
    assert auth["credentials_file"] == "/run/secrets/tritonops_alertmanager_token"
    host = "controller:8080" if name == "alertmanager.yml" else "tritonops-controller.tritonops.svc.cluster.local:8080"
    assert hook["url"] == f"http://{host}/v1/hooks/alertmanager"


def test_kubernetes_runs_alertmanager_with_the_k8s_config_and_the_token_secret() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "k8s/alertmanager.yaml" in kustomization["resources"]
    (generated,) = [c for c in kustomization["configMapGenerator"] if c["name"] == "alertmanager-config"]
    assert generated["files"] == ["alertmanager.yml=alertmanager/alertmanager-k8s.yml"]
    deployment = next(yaml.safe_load_all((DEPLOY / "k8s" / "alertmanager.yaml").read_text()))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "alertmanager-config"
    assert volumes["token"]["secret"]["items"] == [{"key": "token", "path": "tritonops_alertmanager_token"}]
    mounts = {
        m["name"]: m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts["token"] == "/run/secrets" and mounts["config"] == "/etc/alertmanager"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_prometheus_sends_alerts_to_alertmanager(config: str) -> None:
    loaded = yaml.safe_load((DEPLOY / "prometheus" / config).read_text())
    (targets,) = [c["targets"] for am in loaded["alerting"]["alertmanagers"] for c in am["static_configs"]]
    assert len(targets) == 1 and targets[0].split(":")[0].startswith("alertmanager") and targets[0].endswith(":9093")


def test_every_alert_has_a_runbook_section_that_exists() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    anchors = {_anchor(line.lstrip("#")) for line in OPERATIONS.read_text().splitlines() if line.startswith("#")}
    assert len(alerts) == 14
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md", url
        assert anchor == alert["alert"].lower() and anchor in anchors, f"{alert['alert']}: no section #{anchor}"

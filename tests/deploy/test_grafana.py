"""The committed dashboard is what deploy/grafana/dashboard.py builds, and every query reads a series that
exists: a recording rule of deploy/prometheus or a family of docs/contracts.md."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import sys
from types import ModuleType
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY

GRAFANA = DEPLOY / "grafana"
CONTROL_PLANE_FAMILIES = {
    "tritonops_live_version",
    "tritonops_canary_version",
    "tritonops_canary_weight",
    "tritonops_drift_statistic",
    "tritonops_drift_detected",
    "tritonops_guardrail_breached",
    "tritonops_last_rollback_timestamp_seconds",
    "tritonops_rollbacks_total",
}
_METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


def _dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tritonops_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _committed() -> dict[str, Any]:
    data = json.loads((GRAFANA / "dashboards" / "tritonops.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _recorded_names() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "recording.yml").read_text(encoding="utf-8"))
    return {rule["record"] for group in rules["groups"] for rule in group["rules"]}


def test_committed_json_is_the_generated_one() -> None:
    rendered = _dashboard_module().render()
    assert rendered == (GRAFANA / "dashboards" / "tritonops.json").read_text(encoding="utf-8"), (
        "run: python deploy/grafana/dashboard.py"
    )


def test_panels_cover_the_issue() -> None:
    panels = [p for p in _committed()["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"] for p in panels).lower()
    for needed in (
        "p50 / p95 / p99",
        "requests per second",
        "error",
        "queue vs compute",
        "batch size",
        "cache",
        "live version",
        "canary",
        "drift per feature",
    ):
        assert needed in titles, needed
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        assert all(t["expr"] and t["refId"] for t in panel["targets"])


def test_no_hard_coded_datasource_and_an_instance_variable() -> None:
    board = _committed()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert next(iter(variables)) == "datasource"  # the others' queries read it, so it comes first
    assert variables["instance"]["query"] == "label_values(nv_inference_count, instance)"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]
    assert all(a["datasource"]["uid"] == "${datasource}" for a in board["annotations"]["list"])
    assert '"uid": "prometheus"' not in json.dumps(board)
    per_instance = [p for p in board["panels"] if "by instance" in p.get("title", "")]
    assert len(per_instance) == 2 and all('instance=~"$instance"' in p["targets"][0]["expr"] for p in per_instance)


def test_every_query_reads_a_recorded_or_contract_series() -> None:
    known = _recorded_names() | CONTROL_PLANE_FAMILIES
    board = _committed()
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    assert len(exprs) >= 18
    for expr in exprs:
        names = set(_METRIC.findall(expr))
        assert names, expr
        assert names <= known, f"{expr}: unknown series {names - known}"


def test_rollbacks_are_annotations_placed_at_their_time() -> None:
    (annotation,) = _committed()["annotations"]["list"]
    assert annotation["expr"].startswith("tritonops_last_rollback_timestamp_seconds")
    assert annotation["useValueForTime"] is True


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tritonops.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_sdk_build_matches_the_grafana_that_deploy_runs() -> None:
    sdk = importlib.metadata.version("grafana-foundation-sdk")  # "<build epoch>!<grafana version>"
    grafana = ".".join(sdk.split("!")[-1].split(".")[:2])
    images = re.findall(r"grafana/grafana:(\d+\.\d+)", (DEPLOY.parent / "docker-compose.yml").read_text())
    images += re.findall(r"grafana/grafana:(\d+\.\d+)", (DEPLOY / "k8s" / "grafana.yaml").read_text())
    assert len(images) == 2 and set(images) == {grafana}, (sdk, images)

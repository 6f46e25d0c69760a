"""The tritonops Grafana dashboard, built with Grafana's typed SDK (``grafana-foundation-sdk``).

Run ``python deploy/grafana/dashboard.py`` to regenerate ``deploy/grafana/dashboards/tritonops.json`` after an
edit; ``tests/deploy/test_grafana.py`` fails when the committed JSON and this file disagree, and
``tests/deploy/test_panel_queries.py`` runs every query below against a real Prometheus scraping a real Triton.

Panels read the recording rules of ``deploy/prometheus/rules/recording.yml`` (cheap, and the same numbers the
alerts and ``tritonops top`` use). Triton labels a running canary ``<model>__canary``: the ``$model`` variable
lists base names, and Triton-side queries match ``($model)(__canary)?`` so live and canary show side by side.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "tritonops.json"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Every query reads the ``$datasource`` variable: the dashboard imports into any Grafana with any Prometheus uid
(ours is provisioned by ``provisioning/datasources/prometheus.yml``)."""

TRITON = 'model=~"($model)(__canary)?", version=~"$version"'
"""Selector for Triton-side series (live and canary alias)."""
PER_INSTANCE = f'instance=~"$instance", {TRITON}'
"""Selector for the per-instance series (one Triton pod among many)."""
BACKEND = 'model=~"$model", version=~"$version"'
"""Selector for our backend's and the drift series (manifest name, never the alias)."""
CONTROL = 'model=~"$model"'
"""Selector for the control plane exporter's per-model series."""
SERIES = "{{model}} v{{version}}"
SHADOW = "{{model}} v{{version}} shadow v{{shadow_version}}"
CANARY_SERIES = "{{model}} v{{version}} canary v{{canary_version}}"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = SERIES


@dataclass(frozen=True)
class PanelSpec:
    """A panel: its kind decides the builder, the rest is shared."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    (
        "Rollout",
        (
            PanelSpec(
                "Live version",
                "The version unversioned requests reach (control plane desired state).",
                (Query(f"tritonops_live_version{{{CONTROL}}}", "{{model}}"),),
                kind="stat",
                width=6,
                height=4,
            ),
            PanelSpec(
                "Canary version",
                "The candidate loaded as <model>__canary, 0 when none.",
                (Query(f"tritonops_canary_version{{{CONTROL}}}", "{{model}}"),),
                kind="stat",
                width=6,
                height=4,
            ),
            PanelSpec(
                "Canary weight",
                "Share of requests the live model sends to the canary (split inside Triton).",
                (Query(f"tritonops_canary_weight{{{CONTROL}}}", "{{model}}"),),
                unit="percentunit",
                kind="stat",
                width=6,
                height=4,
            ),
            PanelSpec(
                "Drift verdict",
                "1 = the control plane detects drift on this version (PSI / JS / KS over thresholds).",
                (Query(f"max by (model, version) (tritonops_drift_detected{{{BACKEND}}})"),),
                kind="stat",
                width=6,
                height=4,
            ),
        ),
    ),
    (
        "Traffic",
        (
            PanelSpec(
                "Requests per second",
                "Inference requests (success + failure) per model and version, and rows scored by the backend.",
                (
                    Query(f"model_version:nv_inference_requests:rate1m{{{TRITON}}}"),
                    Query(f"model_version:tritonops_rows:rate1m{{{BACKEND}}}", "rows {{model}} v{{version}}"),
                ),
                unit="reqps",
                width=8,
            ),
            PanelSpec(
                "Error ratio",
                "(Triton failures + requests the backend rejected as invalid) / all requests.",
                (Query(f"model_version:nv_inference_error_ratio:rate1m{{{TRITON}}}"),),
                unit="percentunit",
                width=8,
            ),
            PanelSpec(
                "Failures by reason",
                "Triton's failure reasons, and requests our backend rejected as invalid, by reason.",
                (
                    Query(
                        f"model_version_reason:nv_inference_request_failure:rate1m{{{TRITON}}}",
                        "{{model}} v{{version}} {{reason}}",
                    ),
                    Query(
                        f"model_version_reason:tritonops_invalid_requests:rate1m{{{BACKEND}}}",
                        "invalid {{model}} v{{version}} {{reason}}",
                    ),
                ),
                unit="reqps",
                width=8,
            ),
        ),
    ),
    (
        "Instances",
        (
            PanelSpec(
                "Requests per second by instance",
                "Requests (success + failure) each Triton instance answered ($instance): an uneven share means a "
                "client or gateway sticks to one pod.",
                (
                    Query(
                        f"instance_model_version:nv_inference_requests:rate1m{{{PER_INSTANCE}}}",
                        "{{instance}} " + SERIES,
                    ),
                ),
                unit="reqps",
            ),
            PanelSpec(
                "Failures per second by instance",
                "Triton's failed requests per instance: one failing pod stands out before the fleet's ratio moves.",
                (
                    Query(
                        f"instance_model_version:nv_inference_request_failure:rate1m{{{PER_INSTANCE}}}",
                        "{{instance}} " + SERIES,
                    ),
                ),
                unit="reqps",
            ),
        ),
    ),
    (
        "Latency",
        (
            PanelSpec(
                "Latency p50 / p95 / p99 (Triton, end to end)",
                "Server-side request latency from Triton's summary; the worst replica per model and version.",
                (
                    Query(
                        f"model_version_quantile:nv_inference_request_duration_seconds:max{{{TRITON}}}",
                        "{{model}} v{{version}} p{{quantile}}",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "Backend latency p50 / p95 / p99 (validation + ONNX Runtime)",
                "From the backend's histogram, aggregated over every replica.",
                (
                    Query(
                        f"model_version_quantile:tritonops_request_duration_seconds:histogram_quantile1m{{{BACKEND}}}",
                        "{{model}} v{{version}} p{{quantile}}",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "Queue vs compute time",
                "Mean time per request waiting in the dynamic batcher vs computing (input + infer + output).",
                (
                    Query(f"model_version:nv_inference_queue_seconds:mean1m{{{TRITON}}}", "queue " + SERIES),
                    Query(f"model_version:nv_inference_compute_seconds:mean1m{{{TRITON}}}", "compute " + SERIES),
                ),
                unit="s",
                width=8,
            ),
            PanelSpec(
                "Batch size",
                "Rows per model execution: how full dynamic batching makes the batches.",
                (Query(f"model_version:nv_inference_batch_size:mean1m{{{TRITON}}}"),),
                width=8,
            ),
            PanelSpec(
                "Pending requests",
                "Requests queued in Triton, summed over replicas. Growing = the model can't keep up.",
                (Query(f"model_version:nv_inference_pending_requests:sum{{{TRITON}}}"),),
                width=8,
            ),
        ),
    ),
    (
        "Cache and drift",
        (
            PanelSpec(
                "Response cache hit ratio",
                "Cache hits / lookups of the tritonops backend's cache (models converted with response_cache), "
                "or of Triton's own cache where a hand-written config enables it.",
                (Query(f"model_version:tritonops_cache_hit_ratio:rate1m{{{TRITON}}}"),),
                unit="percentunit",
                width=8,
            ),
            PanelSpec(
                "Drift per feature",
                "The control plane's drift statistic per feature vs the reference ($statistic).",
                (
                    Query(
                        f'tritonops_drift_statistic{{{BACKEND}, statistic=~"$statistic"}}',
                        "{{feature}} {{statistic}} v{{version}}",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "Prediction mix",
                "Share of predictions per class; compare with the reference class mix.",
                (
                    Query(
                        f"model_version_class:tritonops_prediction:ratio1m{{{BACKEND}}}",
                        "{{class}} v{{version}}",
                    ),
                ),
                unit="percentunit",
                width=8,
            ),
        ),
    ),
    (
        "Canary and shadow",
        (
            PanelSpec(
                "Canary traffic share",
                "Share of the live model's successful requests its backend routed to the canary and the canary "
                "answered; fallbacks per second: routed requests live re-scored because the canary failed or was "
                "not loaded.",
                (
                    Query(f"model_version:tritonops_canary_share:rate1m{{{BACKEND}}}", CANARY_SERIES),
                    Query(
                        f"model_version:tritonops_canary_fallbacks:rate1m{{{BACKEND}}}", "fallbacks/s " + CANARY_SERIES
                    ),
                ),
                unit="percentunit",
                width=8,
            ),
            PanelSpec(
                "Shadow rows per second",
                "Live's answered rows mirrored to the shadow, rows dropped (shadow queue full) and rows the shadow "
                "failed to score, by reason.",
                (
                    Query(f"model_version:tritonops_shadow_mirrored_rows:rate1m{{{BACKEND}}}", SHADOW + " mirrored"),
                    Query(f"model_version:tritonops_shadow_dropped_rows:rate1m{{{BACKEND}}}", SHADOW + " dropped"),
                    Query(
                        f"model_version_reason:tritonops_shadow_errors:rate1m{{{BACKEND}}}",
                        SHADOW + " errors {{reason}}",
                    ),
                ),
                unit="cps",
                width=8,
            ),
            PanelSpec(
                "Shadow agreement",
                "Compared rows where the shadow's label equals live's, over compared rows (5 min).",
                (Query(f"model_version:tritonops_shadow_agreement:ratio5m{{{BACKEND}}}", SHADOW),),
                unit="percentunit",
                width=8,
            ),
            PanelSpec(
                "Shadow |probability difference|",
                "Per compared row, the largest |live - shadow| class probability: the mean over 5 min, and the p99 "
                "from the difference buckets.",
                (
                    Query(f"model_version:tritonops_shadow_prob_diff:mean5m{{{BACKEND}}}", SHADOW + " mean"),
                    Query(
                        f"model_version_quantile:tritonops_shadow_prob_diff:histogram_quantile5m{{{BACKEND}}}",
                        SHADOW + " p{{quantile}}",
                    ),
                ),
            ),
            PanelSpec(
                "Shadow latency p50 / p99",
                "Shadow time per mirrored batch (validation + model or the BLS call, + comparison), off the "
                "answer's path.",
                (
                    Query(
                        f"model_version_quantile:tritonops_shadow_duration_seconds:histogram_quantile1m{{{BACKEND}}}",
                        SHADOW + " p{{quantile}}",
                    ),
                ),
                unit="s",
            ),
        ),
    ),
)


ROLLBACK_ANNOTATION = f"tritonops_last_rollback_timestamp_seconds{{{CONTROL}}} * 1000"
"""Rollbacks: each series' value is the time of the model's last rollback (Grafana places it by value)."""


def _target(query: Query, ref_id: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref_id)
        .range()
        .datasource(DATASOURCE)
    )


def _panel(spec: PanelSpec) -> timeseries.Panel | stat.Panel:
    panel: timeseries.Panel | stat.Panel = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    panel.title(spec.title).description(spec.description).unit(spec.unit).datasource(DATASOURCE)
    panel.span(spec.width).height(spec.height)
    for index, query in enumerate(spec.queries):
        panel.with_target(_target(query, chr(ord("A") + index)))
    if isinstance(panel, stat.Panel):
        panel.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    else:
        panel.fill_opacity(10).line_width(1)
        if spec.unit == "percentunit":
            panel.min(0)
    return panel


def _variable(name: str, label: str, query: str, regex: str = "") -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )
    if regex:
        variable.regex(regex)
    return variable


def build() -> db.Dashboard:
    """The dashboard, typed."""
    board = (
        db.Dashboard("tritonops: models on Triton")
        .uid("tritonops")
        .description(
            "Per model and version: traffic, errors, latency, batching, cache, rollout, drift, canary and shadow."
        )
        .tags(["tritonops", "triton"])
        .time("now-1h", "now")
        .refresh("10s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            # Base model names: the canary alias folds into its model.
            _variable("model", "Model", "label_values(nv_inference_count, model)", r"/^(.*?)(?:__canary)?$/")
        )
        .with_variable(
            _variable("version", "Version", 'label_values(nv_inference_count{model=~"($model)(__canary)?"}, version)')
        )
        .with_variable(_variable("instance", "Triton instance", "label_values(nv_inference_count, instance)"))
        .with_variable(_variable("statistic", "Drift statistic", "label_values(tritonops_drift_statistic, statistic)"))
        .annotation(
            db.AnnotationQuery()
            .name("Rollbacks")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("red")
            .expr(ROLLBACK_ANNOTATION)
        )
    )
    for title, panels in ROWS:
        board.with_row(db.Row(title))
        for spec in panels:
            board.with_panel(_panel(spec))
    return board


def render() -> str:
    """The dashboard JSON exactly as committed (stable key order, trailing newline)."""
    model = build().build()
    data = json.loads(json.dumps(model, cls=JSONEncoder))
    for annotation in data.get("annotations", {}).get("list", []):
        if annotation.get("name") == "Rollbacks":
            annotation["useValueForTime"] = True  # not modelled by the SDK: place it at the value's time
            annotation["titleFormat"] = "rollback {{model}}"
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

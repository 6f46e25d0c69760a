"""``tritonops feedback prediction|label|accuracy``: ground truth by request id, accuracy per version."""

from __future__ import annotations

import typer
from rich.table import Table

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.remote import controller
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.state import StateStore
from tritonops.settings import load_settings

feedback_app = typer.Typer(
    help="Ground truth: record which version answered a request and the right answer; accuracy per version.",
    no_args_is_help=True,
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("prediction")
def prediction(
    request_id: str = typer.Argument(..., help="The request id sent with the inference request."),
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version that answered."),
    label: str = typer.Argument(..., help="Label it predicted."),
) -> None:
    """Record a prediction (the SDK does this itself when asked to record predictions)."""
    if api := controller():
        api.feedback(predictions=[{"request_id": request_id, "model": model, "version": version, "label": label}])
    else:
        with FeedbackStore(load_settings().state) as store:
            store.record_prediction(request_id, model, version, label)
    console.print(f"recorded: {request_id} -> {model} v{version} predicted {label!r}")


@feedback_app.command("label")
def label(
    request_id: str = typer.Argument(..., help="The request id of a recorded prediction."),
    true_label: str = typer.Argument(..., help="The right answer."),
) -> None:
    """Record the true label of a request; a later label replaces an earlier one."""
    if api := controller():
        api.feedback(labels=[{"request_id": request_id, "true_label": true_label}])
    else:
        with FeedbackStore(load_settings().state) as store:
            store.record_feedback(request_id, true_label)
    console.print(f"recorded: {request_id} is {true_label!r}")


@feedback_app.command("accuracy")
def accuracy(
    model: str = typer.Argument(..., help="Model name."),
    min_labels: int = typer.Option(50, min=1, help="Labels each side needs before the canary test counts."),
) -> None:
    """Accuracy per version; with a canary running, whether it is significantly less accurate than live."""
    if api := controller():
        report, comparison = api.accuracy(model, min_labels)
    else:
        settings = load_settings()
        with StateStore.open(settings.state) as state_store:
            state = state_store.model(model)
        with FeedbackStore(settings.state) as store:
            report = store.accuracy_report(model)
            comparison = (
                store.compare_accuracy(model, state.live, state.canary, min_labels)
                if state is not None and state.live is not None and state.canary is not None
                else None
            )
    if not report:
        console.print(f"no predictions recorded for {model!r}")
        return
    table = Table("version", "predictions", "labelled", "correct", "accuracy")
    for row in report:
        table.add_row(
            str(row.version),
            str(row.predictions),
            str(row.labelled),
            str(row.correct),
            f"{row.accuracy:.4f}" if row.accuracy is not None else "-",
        )
    console.print(table)
    if comparison is not None:
        if not comparison.enough_labels:
            console.print(f"canary v{comparison.canary.version}: fewer than {min_labels} labels on a side, no test yet")
        elif comparison.p_value_worse is None:
            console.print("canary vs live: no spread in the labels, the test is undefined")
        else:
            console.print(
                f"canary v{comparison.canary.version} vs live v{comparison.live.version}: z = {comparison.z:.3f}, "
                f"p(canary worse) = {comparison.p_value_worse:.4g}"
            )

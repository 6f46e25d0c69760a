"""``tritonops feedback prediction|label|accuracy``: ground truth by request id, accuracy per version."""

from __future__ import annotations

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json, print_table
from tritonops.control_plane.cli.remote import controller

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
    state: str | None = options.STATE,
) -> None:
    """Record a prediction (the SDK does this itself when asked to record predictions)."""
    if api := controller():
        api.feedback(predictions=[{"request_id": request_id, "model": model, "version": version, "label": label}])
    else:
        from tritonops.control_plane.feedback import FeedbackStore

        with FeedbackStore(options.settings(state=state).state) as store:
            store.record_prediction(request_id, model, version, label)
    console().print(f"recorded: {request_id} -> {model} v{version} predicted {label!r}", markup=False)


@feedback_app.command("label")
def label(
    request_id: str = typer.Argument(..., help="The request id of a recorded prediction."),
    true_label: str = typer.Argument(..., help="The right answer."),
    state: str | None = options.STATE,
) -> None:
    """Record the true label of a request; a later label replaces an earlier one."""
    if api := controller():
        api.feedback(labels=[{"request_id": request_id, "true_label": true_label}])
    else:
        from tritonops.control_plane.feedback import FeedbackStore

        with FeedbackStore(options.settings(state=state).state) as store:
            store.record_feedback(request_id, true_label)
    console().print(f"recorded: {request_id} is {true_label!r}", markup=False)


@feedback_app.command("accuracy")
def accuracy(
    model: str = typer.Argument(..., help="Model name."),
    min_labels: int = typer.Option(50, min=1, help="Labels each side needs before the canary test counts."),
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """Accuracy per version; with a canary running, whether it is significantly less accurate than live."""
    from tritonops.control_plane.views import from_accuracy

    if api := controller():
        report, comparison = api.accuracy(model, min_labels)
    else:
        from tritonops.control_plane.feedback import FeedbackStore
        from tritonops.control_plane.state import StateStore

        settings = options.settings(state=state)
        with StateStore.open(settings.state, create=False) as state_store:
            desired = state_store.model(model)
        with FeedbackStore(settings.state) as store:
            report = store.accuracy_report(model)
            comparison = (
                store.compare_accuracy(model, desired.live, desired.canary, min_labels)
                if desired is not None and desired.live is not None and desired.canary is not None
                else None
            )
    view = from_accuracy(model, report, comparison)
    if as_json:
        print_json(view)
        return
    if not view.versions:
        console().print(f"no predictions recorded for {model!r}", markup=False)
        return
    rows = [
        [
            str(row.version),
            str(row.predictions),
            str(row.labelled),
            str(row.correct),
            f"{row.accuracy:.4f}" if row.accuracy is not None else "-",
        ]
        for row in view.versions
    ]
    print_table(["version", "predictions", "labelled", "correct", "accuracy"], rows)
    c = view.comparison
    if c is not None:
        if not c.enough_labels:
            console().print(f"canary v{c.canary_version}: fewer than {min_labels} labels on a side, no test yet")
        elif c.p_value_worse is None or c.z is None:
            console().print("canary vs live: no spread in the labels, the test is undefined")
        else:
            console().print(
                f"canary v{c.canary_version} vs live v{c.live_version}: z = {c.z:.3f}, "
                f"p(canary worse) = {c.p_value_worse:.4g}",
                highlight=False,
            )

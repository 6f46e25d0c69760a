"""``tritonops convert`` and ``tritonops models list|show``: thin wrappers over ``tritonops.converters``.

The converters (ONNX, scikit-learn, pandas...) are imported inside the commands, so ``--help`` stays instant.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json, print_table, styled

if TYPE_CHECKING:
    from tritonops.converters import ModelVersion
    from tritonops.converters.torch import ModuleOutput

models_app = typer.Typer(help="Inspect the converted models in the model repository.", no_args_is_help=True)
app.add_typer(models_app, name="models")


class TorchOutput(StrEnum):
    """What a PyTorch module returns."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"


@app.command("convert")
def convert(
    model_file: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="Trained model: a .joblib/.pkl/.pickle, .skops or .pt/.pth/.ts file, or an MLflow URI "
        "(models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH; server: $MLFLOW_TRACKING_URI).",
    ),
    name: str = typer.Option(
        None, "--name", "-n", help="Model name in the repository (MLflow registry URIs: default the registered name)."
    ),
    sample: Path = typer.Option(
        None,
        "--sample",
        "-s",
        help="CSV or Parquet rows in the training format (parity check + drift reference). "
        "MLflow models: default the logged input_example.",
    ),
    repository: Path | None = options.REPOSITORY,
    label_column: str = typer.Option(None, help="Column of the sample to drop (the target), if present."),
    classes: str = typer.Option(
        None, help="PyTorch only: class names in output order, comma-separated (all digits -> integers)."
    ),
    torch_factory: str = typer.Option(
        None, help="PyTorch state dict: 'module:function' that builds the untrained nn.Module."
    ),
    input_dim: int = typer.Option(None, help="Argument passed to --torch-factory (number of input features)."),
    torch_output: TorchOutput = typer.Option(TorchOutput.LOGITS, help="What the PyTorch module returns."),
    max_batch_size: int = typer.Option(1024, help="Triton max_batch_size."),
    preferred_batch_size: list[int] = typer.Option(
        [16, 64, 256], help="Dynamic batching preferred batch size (repeatable)."
    ),
    max_queue_delay_us: int = typer.Option(200, help="Dynamic batching max queue delay in microseconds."),
    instances: int = typer.Option(2, help="Model instances (CPU)."),
    cache: bool = typer.Option(
        False,
        "--cache/--no-cache",
        help="Cache answers to repeated inputs in the backend (successful answers only; 4096 per instance).",
    ),
    min_label_agreement: float = typer.Option(1.0, help="Parity: minimum label agreement outside ties (0..1)."),
    max_prob_diff: float = typer.Option(1e-4, help="Parity: maximum |probability difference| allowed."),
    parity_rows: int = typer.Option(2000, help="Rows drawn from the sample for the parity check."),
    native_export: bool = typer.Option(
        True, "--native-export/--no-native-export", help="Also write <name>__onnxruntime for the NGC image."
    ),
    allow_version_skew: bool = typer.Option(
        False,
        "--allow-version-skew",
        help="Convert a model saved with another scikit-learn version (refused by default; recorded in the manifest).",
    ),
) -> None:
    """Convert a trained classifier to ONNX, check parity, and write the next version into the repository.

    \b
    Supported (binary + multi-class, int or string labels; docs/converters.md):
      scikit-learn  DecisionTree, RandomForest, ExtraTrees, GradientBoosting,
                    HistGradientBoosting, LogisticRegression, SVC(probability),
                    CalibratedClassifierCV, KNeighbors, MLP, GaussianNB
      boosting      LGBMClassifier, XGBClassifier (int labels only),
                    CatBoostClassifier (numeric estimator inputs);
                    pip install 'tritonops\\[boosting]'
      PyTorch       nn.Module / TorchScript: logits or probabilities over
                    --classes, numeric inputs
    Estimators convert alone or as the last step of a Pipeline /
    ColumnTransformer over numeric and string columns.

    \b
    The parity gate scores a seeded draw of the sample, then generated rows:
      thresholds        a feature on or next to every split threshold
      range             a feature at its observed minimum / maximum
      float32-extremes  a feature at +-3.4e38 (enforced for trees)
      missing           NaN in each feature the model accepts NaN for
    A failing group stops the conversion, naming its worst rows; nothing is
    written. A model saved with another scikit-learn version is refused
    unless --allow-version-skew.

    \b
    MLflow (server: $MLFLOW_TRACKING_URI; pip install 'tritonops\\[mlflow]'):
      tritonops convert models:/churn@champion
    resolves the alias once, loads the sklearn or pytorch flavor, uses the
    logged input_example when --sample is not given, and records the URI,
    registered version, run id and signature in the manifest.
    """
    from tritonops.converters import ConversionOptions, ParityThresholds
    from tritonops.converters.files import convert_file, load_sample, parse_classes
    from tritonops.converters.mlflow_source import convert_mlflow, is_mlflow_uri
    from tritonops.model_config import ServingOptions

    module_output: ModuleOutput = "logits" if torch_output is TorchOutput.LOGITS else "probabilities"
    conversion = ConversionOptions(
        thresholds=ParityThresholds(min_label_agreement=min_label_agreement, max_prob_diff=max_prob_diff),
        serving=ServingOptions(
            max_batch_size=max_batch_size,
            preferred_batch_sizes=tuple(preferred_batch_size),
            max_queue_delay_microseconds=max_queue_delay_us,
            instance_count=instances,
            response_cache=cache,
        ),
        parity_rows=parity_rows,
        native_export=native_export,
    )
    started = time.perf_counter()

    def report(step: str) -> None:
        console().print(styled(">", "dim"), step, markup=False, highlight=False)

    if is_mlflow_uri(model_file):
        version = convert_mlflow(
            model_file,
            name=name,
            repository=options.settings(repository).repository,
            sample=load_sample(sample, label_column) if sample is not None else None,
            classes=parse_classes(classes) if classes else None,
            torch_output=module_output,
            options=conversion,
            progress=report,
            allow_version_skew=allow_version_skew,
        )
        _summary(version, time.perf_counter() - started)
        return
    if name is None:
        raise typer.BadParameter("give the model a name in the repository", param_hint="--name")
    if sample is None:
        raise typer.BadParameter("give rows in the training format (CSV or Parquet)", param_hint="--sample")
    version = convert_file(
        Path(model_file),
        sample,
        name=name,
        repository=options.settings(repository).repository,
        classes=parse_classes(classes) if classes else None,
        torch_factory=torch_factory,
        input_dim=input_dim,
        torch_output=module_output,
        label_column=label_column,
        options=conversion,
        progress=report,
        allow_version_skew=allow_version_skew,
    )
    _summary(version, time.perf_counter() - started)


def _summary(version: ModelVersion, seconds: float | None) -> None:
    """Key facts of one version; ``seconds`` is the conversion time (None when only showing it)."""
    manifest = version.manifest
    parity = manifest.parity
    source = manifest.source
    rows = [
        ["path", str(version.path)],
        ["source", f"{source.estimator} ({source.framework} {source.framework_version})"],
        ["inputs", ", ".join(f"{t.name} {t.datatype}[{len(t.features)}]" for t in manifest.inputs)],
        ["classes", ", ".join(str(c) for c in manifest.classes)],
        [
            "parity",
            f"{parity.rows} rows, label agreement {parity.label_agreement:.4f}, "
            f"max |prob diff| {parity.max_abs_prob_diff:.2e}, tie rows {parity.tie_rows}",
        ],
    ]
    for group in parity.groups:
        verdict = "passed" if group.passed else "failed" if group.enforced else "differs (not enforced)"
        rows.append(
            [
                f"  {group.name}",
                f"{group.rows} generated rows, max |prob diff| {group.max_abs_prob_diff:.2e}: {verdict}",
            ]
        )
    if parity.seconds is not None:
        rows.append(["  gate time", f"{parity.seconds:.2f} s"])
    for skew in source.version_skew:
        rows.append(["version skew", f"trained with {skew.package} {skew.trained}, converted with {skew.converted}"])
    if source.mlflow is not None:
        mlflow = source.mlflow
        registered = (
            f" = {mlflow.registered_model} version {mlflow.registered_version}" if mlflow.registered_model else ""
        )
        rows.append(["mlflow", f"{mlflow.uri}{registered}, run {mlflow.run_id}, sample from {mlflow.sample_from}"])
    rows.append(["onnx", f"opset {manifest.onnx.opset}, sha256 {manifest.onnx.sha256[:16]}..."])
    if seconds is not None:
        rows.append(["took", f"{seconds:.1f} s"])
    heading = "converted" if seconds is not None else "model"
    print_table(["", ""], rows, title=f"{heading} {manifest.name} version {manifest.version}", show_header=False)


@models_app.command("list")
def list_command(repository: Path | None = options.REPOSITORY, as_json: bool = options.JSON) -> None:
    """Every model in the repository with its versions and newest manifest."""
    from tritonops.control_plane.views import from_models
    from tritonops.converters import list_models, list_versions

    root = options.settings(repository).repository
    view = from_models(root, {name: list_versions(root, name) for name in list_models(root)})
    if as_json:
        print_json(view)
        return
    if not view.models:
        console().print(
            f"no models in {root}: convert one with `tritonops convert MODEL_FILE --name NAME --sample ...`",
            markup=False,
        )
        return
    rows = [
        [
            m.name,
            ", ".join(map(str, m.versions)),
            str(m.latest),
            m.framework,
            m.estimator.rsplit(".", 1)[-1],
            ", ".join(map(str, m.classes)),
            m.created_at[:19].replace("T", " "),
        ]
        for m in view.models
    ]
    print_table(["model", "versions", "latest", "framework", "estimator", "classes", "created (UTC)"], rows)


@models_app.command("show")
def show(
    name: str = typer.Argument(..., help="Model name."),
    version: int | None = typer.Option(None, "--version", help="Version to show (default: the newest)."),
    repository: Path | None = options.REPOSITORY,
    as_json: bool = typer.Option(False, "--json", help="Print the version's manifest.json (docs/contracts.md)."),
) -> None:
    """One version's manifest: source, features, parity and reference statistics."""
    from tritonops.converters import list_versions

    versions = list_versions(options.settings(repository).repository, name)
    chosen = versions[-1] if version is None else next((v for v in versions if v.version == version), None)
    if chosen is None:
        raise typer.BadParameter(
            f"{name} has versions {[v.version for v in versions]}, not {version}", param_hint="--version"
        )
    manifest = chosen.manifest
    if as_json:
        print(manifest.to_json())
        return
    _summary(chosen, None)
    rows = []
    for feature in manifest.features:
        reference = manifest.reference.features[feature.name]
        if reference.kind == "numeric":
            described = f"{len(reference.bin_edges) + 1} bins, NaN {reference.nan_proportion:.1%}"
        else:
            described = f"{len(reference.categories)} categories + other"
        nan_ok = "yes" if feature.allow_nan else "no"
        rows.append([feature.name, feature.tensor, str(feature.column), feature.dtype, nan_ok, described])
    print_table(["feature", "tensor", "column", "dtype", "NaN ok", "reference"], rows)
    mix = manifest.reference.predictions
    console().print(
        "prediction mix on the sample: "
        + ", ".join(f"{c} {p:.1%}" for c, p in zip(mix.classes, mix.proportions, strict=True)),
        markup=False,
        highlight=False,
    )

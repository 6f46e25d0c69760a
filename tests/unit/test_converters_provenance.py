"""Where a model came from: version skew refused (or allowed and recorded), clear errors for a non-classifier inside
a pipeline and for a model whose library is not installed."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from tritonops.contract.manifest import VersionSkew
from tritonops.control_plane.cli import main
from tritonops.control_plane.rollout import provenance
from tritonops.converters import NotAClassifierError, convert_sklearn
from tritonops.converters.errors import VersionSkewError
from tritonops.converters.files import load_model_file

OTHER_VERSION = "1.8.0"


def _frame(rows: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["a", "b", "c", "d"])
    return frame, pd.Series(np.where(frame["a"] + frame["b"] > 0, "yes", "no"), dtype=object)


def _pickled_with_other_sklearn(path: Path) -> None:
    """Pickle a fitted pipeline, then rewrite the scikit-learn version every estimator stores in its state.

    scikit-learn's ``__getstate__`` writes ``_sklearn_version`` (this environment's version) into each pickled
    estimator; replacing that string in the bytes (same length) gives exactly what an older scikit-learn writes.
    """
    assert len(OTHER_VERSION) == len(sklearn.__version__) and sklearn.__version__ != OTHER_VERSION
    frame, labels = _frame()
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())]).fit(frame, labels)
    data = pickle.dumps(model)
    marker = sklearn.__version__.encode()
    assert data.count(marker) == 1  # written once, then memoised by pickle for the steps
    path.write_bytes(data.replace(marker, OTHER_VERSION.encode()))


def test_a_pickle_from_another_sklearn_is_refused_naming_both_versions_and_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    _pickled_with_other_sklearn(path)
    with pytest.raises(VersionSkewError) as caught:
        load_model_file(path)
    message = str(caught.value)
    assert f"scikit-learn {OTHER_VERSION}" in message and f"scikit-learn {sklearn.__version__}" in message
    assert "--allow-version-skew" in message
    assert (caught.value.trained, caught.value.here) == (OTHER_VERSION, sklearn.__version__)


def test_the_cli_refuses_skew_and_with_the_flag_records_it_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.pkl"
    _pickled_with_other_sklearn(path)
    frame, _ = _frame()
    frame.to_csv(tmp_path / "sample.csv", index=False)
    repository = tmp_path / "repo"
    argv = ["convert", str(path), "--name", "skewed", "--sample", str(tmp_path / "sample.csv"), "-r", str(repository)]

    assert main(argv) == VersionSkewError.exit_code
    assert "--allow-version-skew" in capsys.readouterr().err
    assert not repository.exists() or list(repository.iterdir()) == []

    assert main([*argv, "--allow-version-skew"]) == 0
    assert "version skew" in capsys.readouterr().out
    manifest = json.loads((repository / "skewed" / "1" / "manifest.json").read_text())
    assert manifest["source"]["training_versions"] == {"scikit-learn": OTHER_VERSION}
    assert manifest["source"]["version_skew"] == [
        {"package": "scikit-learn", "trained": OTHER_VERSION, "converted": sklearn.__version__}
    ]


def test_a_same_version_pickle_records_its_training_version(tmp_path: Path) -> None:
    frame, labels = _frame()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(frame, labels)))
    loaded = load_model_file(path)
    assert loaded.provenance.training_versions == {"scikit-learn": sklearn.__version__}
    assert loaded.provenance.version_skew == []


def test_promote_audit_detail_names_the_allowed_skew(tmp_path: Path) -> None:
    frame, labels = _frame()
    from tritonops.converters.prepared import Provenance

    skew = VersionSkew(package="scikit-learn", trained=OTHER_VERSION, converted=sklearn.__version__)
    version = convert_sklearn(
        LogisticRegression().fit(frame, labels),
        frame,
        name="skewed",
        repository=tmp_path,
        provenance=Provenance(training_versions={"scikit-learn": OTHER_VERSION}, version_skew=[skew]),
    )
    detail = provenance(version.manifest)
    assert f"version skew allowed: trained with scikit-learn {OTHER_VERSION}, converted with" in detail


def test_a_regressor_inside_a_pipeline_is_named_with_what_is_supported(tmp_path: Path) -> None:
    frame, _ = _frame()
    model = Pipeline([("scale", StandardScaler()), ("fit", LinearRegression())]).fit(frame, frame["c"])
    with pytest.raises(NotAClassifierError) as caught:
        convert_sklearn(model, frame, name="regressor", repository=tmp_path)
    message = str(caught.value)
    assert "sklearn.linear_model._base.LinearRegression (the last step of the sklearn.pipeline.Pipeline)" in message
    for supported in ("RandomForestClassifier", "HistGradientBoostingClassifier", "XGBClassifier", "LGBMClassifier"):
        assert supported in caught.value.supported and supported in message


def test_a_model_whose_library_is_missing_names_the_extra(tmp_path: Path) -> None:
    """xgboost is installed here, so the child process blocks its import (``sys.modules['xgboost'] = None`` makes
    ``import xgboost`` raise ModuleNotFoundError, as on a machine without it): the one simulated fault here."""
    frame, labels = _frame()
    path = tmp_path / "model.joblib"
    path.write_bytes(pickle.dumps(XGBClassifier(n_estimators=2).fit(frame, (labels == "yes").astype(int))))
    script = (
        "import sys\n"
        "sys.modules['xgboost'] = None\n"
        "from pathlib import Path\n"
        "from tritonops.converters.errors import MissingDependencyError\n"
        "from tritonops.converters.files import load_model_file\n"
        "try:\n"
        f"    load_model_file(Path({str(path)!r}))\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert "No module named 'xgboost'" in result.stdout
    assert "pip install 'tritonops[boosting]'" in result.stdout

"""The seed-style server tritonops replaces: Flask + a joblib-pickled sklearn model, run under gunicorn.

Written the way such services usually are (one request = one ``predict`` + ``predict_proba`` call, JSON in and
out), so the benchmark compares against what users run today. Start it with::

    TRITONOPS_BASELINE_MODEL=model.joblib gunicorn -w 2 -b 127.0.0.1:8000 tritonops.loadtest.baselines.flask_app:app

``POST /predict`` with ``{"instances": [[f0, f1, ...], ...]}`` (columns in training order) returns
``{"labels": [...], "probabilities": [[...], ...], "classes": [...]}``.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
import pandas as pd
from flask import Flask, jsonify, request

MODEL_ENV = "TRITONOPS_BASELINE_MODEL"

app = Flask(__name__)
_model: Any = joblib.load(os.environ[MODEL_ENV])
_columns: list[str] | None = list(getattr(_model, "feature_names_in_", [])) or None


@app.post("/predict")
def predict() -> Any:
    payload = request.get_json(force=True, silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        return jsonify(error="expected a JSON object with a list 'instances'"), 400
    rows = np.asarray(payload["instances"], dtype=np.float64)
    if rows.ndim != 2:
        return jsonify(error=f"'instances' should be a list of rows, got shape {list(rows.shape)}"), 400
    frame = pd.DataFrame(rows, columns=_columns)
    labels = _model.predict(frame)
    probabilities = _model.predict_proba(frame)
    return jsonify(
        labels=labels.tolist(),
        probabilities=probabilities.tolist(),
        classes=[c.item() if hasattr(c, "item") else c for c in _model.classes_],
    )


@app.get("/health")
def health() -> Any:
    return jsonify(status="ok")

"""Prometheus configs and rules pass promtool's checks, and the rule unit tests pass (promtool test rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"


def _promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_config_is_valid_and_loads_both_rule_files(promtool: str, config: str) -> None:
    result = _promtool(promtool, "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout
    assert "rules/recording.yml" in result.stdout and "rules/alerts.yml" in result.stdout


def test_rule_files_are_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", "rules/recording.yml", "rules/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 32 rules found" in result.stdout  # recording
    assert "SUCCESS: 14 rules found" in result.stdout  # alerts


@pytest.mark.parametrize("test_file", ["tests/recording_test.yml", "tests/alerts_test.yml"])
def test_rule_unit_tests_pass(promtool: str, test_file: str) -> None:
    result = _promtool(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_catch_a_wrong_threshold(promtool: str, tmp_path: Path) -> None:
    """The alert tests are not vacuous: raising the error-ratio threshold makes them fail."""
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    alerts = tmp_path / "prometheus" / "rules" / "alerts.yml"
    text = alerts.read_text(encoding="utf-8")
    assert "model_version:nv_inference_error_ratio:rate1m > 0.05" in text
    alerts.write_text(text.replace("error_ratio:rate1m > 0.05", "error_ratio:rate1m > 0.5"), encoding="utf-8")
    result = _promtool(promtool, "test", "rules", "tests/alerts_test.yml", cwd=tmp_path / "prometheus")
    assert result.returncode != 0
    assert "TritonHighErrorRatio" in result.stdout + result.stderr


def test_check_config_rejects_a_broken_config(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "prometheus.yml"
    broken.write_text("scrape_configs:\n  - job_name: triton\n    scrape_interval: soon\n", encoding="utf-8")
    result = _promtool(promtool, "check", "config", str(broken), cwd=tmp_path)
    assert result.returncode != 0
    assert "soon" in result.stdout + result.stderr

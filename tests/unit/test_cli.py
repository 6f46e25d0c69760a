"""The CLI as people use it: instant help, one exit code per error family, one meaning per flag, whole rows when
piped, and read-only commands that never create a state file. Everything runs the real ``tritonops`` in a
subprocess (no server needed)."""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tritonops.control_plane.cli import app
from tritonops.control_plane.cli.app import exit_code_epilog
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.errors import ConfigurationError, ExitCode, TritonOpsError

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "onnxruntime", "onnx", "scipy", "pandas", "pyarrow", "grpc", "tritonclient", "sklearn", "torch", "fastapi",
    "requests", "httpx", "mlflow",
)  # fmt: skip


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(PYTHONPATH=str(REPO_ROOT), COLUMNS="80", **extra)
    return env


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m tritonops ARGS`` in ``tmp_path`` with stdout a pipe (not a terminal), as in ``| cat``."""
    command = [sys.executable, "-m", "tritonops", *args]
    return subprocess.run(command, cwd=tmp_path, env=_env(tmp_path, **env), capture_output=True, text=True, timeout=60)


# -- exit codes -----------------------------------------------------------------------------------------------
FAMILIES = {
    "tritonops.errors.ConfigurationError": 3,
    "tritonops.converters.errors.ConversionError": 4,
    "tritonops.serving.errors.ServingError": 5,
    "tritonops.control_plane.errors.ControlPlaneError": 6,
    "tritonops.control_plane.errors.PolicyError": 3,
    "tritonops.contract.errors.ContractError": 7,
    "tritonops.clients.errors.ClientError": 8,
    "tritonops.loadtest.errors.BenchmarkError": 9,
    "tritonops.control_plane.errors.GuardrailActedError": 10,
    "tritonops.control_plane.errors.AccessError": 11,
    "tritonops.control_plane.errors.RolloutInProgressError": 12,
}


def _class(dotted: str) -> type[TritonOpsError]:
    module, name = dotted.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert issubclass(cls, TritonOpsError)
    return cls


def test_the_exit_code_table_is_pinned() -> None:
    assert {code.name: code.value for code in ExitCode} == {
        "OK": 0, "INTERNAL": 1, "USAGE": 2, "CONFIGURATION": 3, "CONVERSION": 4, "SERVING": 5, "CONTROL_PLANE": 6,
        "CONTRACT": 7, "CLIENT": 8, "BENCHMARK": 9, "GUARDRAIL_ACTED": 10, "ACCESS": 11, "BUSY": 12,
        "INTERRUPTED": 130,
    }  # fmt: skip
    assert all(code.meaning for code in ExitCode)


def test_each_error_family_has_its_own_code() -> None:
    for dotted, code in FAMILIES.items():
        assert _class(dotted).exit_code == code, dotted
    # families that are not configuration never share a code (today: 5 meant "client" and "rollout in progress")
    codes = [code for dotted, code in FAMILIES.items() if not dotted.endswith("PolicyError")]
    assert len(codes) == len(set(codes))
    assert TritonOpsError.exit_code == ExitCode.INTERNAL and ConfigurationError.exit_code == ExitCode.CONFIGURATION


def test_every_error_class_exits_with_a_code_from_the_table() -> None:
    for dotted in FAMILIES:
        _class(dotted)  # import every family, so every subclass is known

    def subclasses(cls: type[TritonOpsError]) -> list[type[TritonOpsError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(TritonOpsError):
        assert isinstance(cls.exit_code, ExitCode), cls
        assert cls.exit_code not in (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERRUPTED), cls


def test_docs_and_help_show_the_same_table() -> None:
    doc = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = doc.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", section, flags=re.MULTILINE)
    assert [(int(code), name, meaning) for code, name, meaning in rows] == [
        (code.value, code.name.lower(), code.meaning) for code in ExitCode
    ]
    epilog = exit_code_epilog()
    for code in ExitCode:
        assert f"{code.value:>3}  {code.name.lower()}: {code.meaning}" in epilog


def test_an_error_prints_its_message_and_notes_once_on_stderr(tmp_path: Path) -> None:
    error = ConfigurationError("bad [thing]")
    error.add_note("try [this]")
    assert error.describe() == "bad [thing]; try [this]" and str(error) == "bad [thing]"  # the message is not rewritten
    done = _cli(tmp_path, "drift", "m", "--window", "soon")
    assert done.returncode == ExitCode.USAGE and "expected a positive duration" in done.stderr
    done = _cli(tmp_path, "drift", "m")
    assert done.returncode == ExitCode.CONTROL_PLANE and "Traceback" not in done.stderr
    assert done.stderr.count("error:") == 1 and "or name the endpoints to scrape with --metrics-url" in done.stderr


# -- help: fast, light ----------------------------------------------------------------------------------------
# typer carries its own copy of click: its objects are recognised by what they have, not by click's classes
def _subcommands(command: Any) -> dict[str, Any]:
    return dict(getattr(command, "commands", {}))


def _commands() -> list[list[str]]:
    """Every command path: [], ["status"], ["fleet"], ["fleet", "add"], ..."""
    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in _subcommands(command).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_help_of_every_command_imports_nothing_heavy() -> None:
    """Also in remote mode: the controller's client (and its HTTP library) is imported only when a command runs."""
    probe = (
        "import sys\n"
        "from tritonops.control_plane.cli import main\n"
        f"for path in {_commands()!r}:\n"
        "    assert main([*path, '--help']) == 0, path\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print(sorted(heavy + [m for m in sys.modules if m.startswith(('tritonops.control_plane.remote', "
        "'tritonops.control_plane.views', 'tritonops.control_plane.state'))]))\n"
    )
    env = {**os.environ, "TRITONOPS_URL": "http://127.0.0.1:9", "TRITONOPS_TOKEN": "not-used"}
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, env=env)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _help_times(args: list[str], runs: int = 5) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` subprocess runs of ``tritonops ARGS``."""
    command = [sys.executable, "-m", "tritonops", *args]
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, timeout=60)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


@pytest.mark.parametrize("args", [["--help"], ["promote", "--help"]])
def test_help_is_fast(args: list[str]) -> None:
    """Median of 5 runs under 0.5 s (the goal is 0.3 s).

    CPU time (user + system: what the command itself costs) is bounded every time. Wall time is bounded in one of
    up to three rounds while the machine has a core per runnable job; on an oversubscribed machine (load average
    above the core count: a shared box running several suites) wall time measures the queue, not the command.
    """
    subprocess.run([sys.executable, "-m", "tritonops", *args], capture_output=True, check=True, timeout=60)  # warm
    rounds = []
    for _ in range(3):
        walls, cpus = _help_times(args)
        assert statistics.median(cpus) < 0.5, f"tritonops {' '.join(args)}: CPU seconds {cpus}"
        rounds.append(walls)
        if statistics.median(walls) < 0.5 or os.getloadavg()[0] > (os.cpu_count() or 1):
            return
    pytest.fail(f"tritonops {' '.join(args)}: median wall time >= 0.5 s in every round: {rounds}")


def test_shell_completion_is_offered(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--help")
    assert "--install-completion" in done.stdout and "--show-completion" in done.stdout
    shown = _cli(tmp_path, "--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert shown.returncode == 0 and "complete" in shown.stdout


# -- flags ----------------------------------------------------------------------------------------------------
def _options() -> list[tuple[str, Any]]:
    root = typer.main.get_command(app)
    result = []
    for path in _commands():
        command: Any = root
        for name in path:
            command = _subcommands(command)[name]
        result += [(" ".join(path), p) for p in command.params if p.param_type_name == "option"]
    assert len(result) > 50
    return result


def test_each_short_flag_means_one_thing() -> None:
    meaning: dict[str, set[str]] = {}
    for _, option in _options():
        longs = [o for o in option.opts if o.startswith("--")]
        for short in (o for o in option.opts if re.fullmatch(r"-\w", o)):
            meaning.setdefault(short, set()).update(longs)
    assert all(len(longs) == 1 for longs in meaning.values()), meaning
    assert meaning == {
        "-r": {"--repository"}, "-n": {"--name"}, "-s": {"--sample"}, "-m": {"--load-model"}, "-d": {"--detach"},
        "-w": {"--window"}, "-p": {"--policy"}, "-i": {"--interval"}, "-o": {"--output"},
    }  # fmt: skip


STATE_COMMANDS = {
    "status", "deploy", "promote", "canary", "rollback", "history", "reconcile", "fleet add", "fleet remove",
    "fleet list", "drift", "watch", "top", "feedback prediction", "feedback label", "feedback accuracy", "retrain",
    "webhooks log", "controller start", "token create", "token list", "token revoke", "policy set", "policy show",
    "policy delete", "fleet ready", "controller status", "shadow start", "shadow stop", "shadow report",
    "capture set", "capture off", "capture export", "mlflow sync",
}  # fmt: skip
REPOSITORY_COMMANDS = {
    "convert", "models list", "models show", "server start", "status", "deploy", "promote", "canary", "rollback",
    "reconcile", "drift", "watch", "top", "controller start", "policy set", "fleet ready", "shadow start",
    "shadow stop", "capture set", "capture off", "mlflow sync",
}  # fmt: skip
JSON_COMMANDS = {
    "status", "history", "fleet list", "models list", "models show", "drift", "feedback accuracy", "server status",
    "top", "deploy", "promote", "canary", "rollback", "reconcile", "retrain", "webhooks log", "capture set",
    "capture off", "capture compact", "capture export", "mlflow sync", "token list", "shadow start", "shadow stop",
    "shadow report", "rollout start", "rollout status", "rollout pause", "rollout resume", "rollout abort",
    "controller status", "fleet ready", "policy show",
}  # fmt: skip


def test_shared_options_are_on_every_command_that_uses_them() -> None:
    names: dict[str, set[str]] = {}
    for command, option in _options():
        names.setdefault(command, set()).update(option.opts)
    assert {c for c, opts in names.items() if "--state" in opts} == STATE_COMMANDS
    assert {c for c, opts in names.items() if "--repository" in opts} == REPOSITORY_COMMANDS
    assert {c for c, opts in names.items() if "--json" in opts} == JSON_COMMANDS
    assert not any("--model-repository" in opts for opts in names.values())


def test_the_policy_help_names_the_default_policy_of_the_state() -> None:
    from tritonops.control_plane.cli.policy import DEFAULT_POLICY
    from tritonops.control_plane.state import DEFAULT_POLICY as STATE_DEFAULT

    assert DEFAULT_POLICY == STATE_DEFAULT


def test_fixed_choices_are_shown_as_choices(tmp_path: Path) -> None:
    assert "--allocator <auto|tcmalloc|system>" in _cli(tmp_path, "server", "start", "--help").stdout
    assert "--torch-output <logits|probabilities>" in _cli(tmp_path, "convert", "--help").stdout
    assert "--role <viewer|operator|admin>" in _cli(tmp_path, "token", "create", "--help").stdout
    refused = _cli(tmp_path, "convert", "m.joblib", "-n", "m", "-s", "s.csv", "--torch-output", "softmax")
    assert refused.returncode == ExitCode.USAGE
    assert "'softmax' is not one of 'logits', 'probabilities'" in refused.stderr


# -- piped output ---------------------------------------------------------------------------------------------
def _state_with_history(tmp_path: Path, model: str, reason: str) -> Path:
    path = tmp_path / "elsewhere" / "state.db"
    with StateStore.open(path) as store:
        store.record(AuditEntry("ci-bot", "promote", model, None, 1, reason, "refused", "nothing [changed]"))
        store.set_live(model, 1, AuditEntry("ci-bot", "desired-state", model, None, 1, "", "ok"))
    return path


def test_piped_tables_print_whole_rows_without_boxes(tmp_path: Path) -> None:
    model = "a_model_name_that_is_long_enough_to_be_cut_in_80_columns_x"
    reason = "a reason that goes on and on so that an eighty column table would have to wrap or cut it somewhere"
    state = _state_with_history(tmp_path, model, reason)
    done = _cli(tmp_path, "history", model, "--state", str(state))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["#", "time", "(UTC)", "actor", "action", "from", "to", "result", "reason", "detail"]
    row = next(line for line in lines if "ci-bot" in line)
    assert reason in row and row.endswith("nothing [changed]") and len(row) > 150
    assert not set("│┃━─┏┡└") & set(done.stdout) and "\x1b[" not in done.stdout
    endpoint = "unreachable-triton-with-a-long-name.invalid:8001"
    subprocess.run(
        [sys.executable, "-m", "tritonops", "fleet", "add", endpoint, "--state", str(state)],
        env=_env(tmp_path), check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    status = _cli(tmp_path, "status", "--state", str(state))
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith(endpoint))
    assert re.search(rf"^{re.escape(endpoint)}\s+-(\s+-){{6}}\s+endpoint {re.escape(endpoint)} is unreachable", row)


# -- read-only commands ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["history", "rf"],
        ["status"],
        ["fleet", "list"],
        ["fleet", "remove", "localhost:8001"],
        ["feedback", "accuracy", "rf"],
        ["reconcile"],
        ["drift", "rf"],
        ["drift", "rf", "--metrics-url", "http://127.0.0.1:9/metrics"],
        ["top", "--once", "--interval", "0.2"],
        ["webhooks", "log"],
        ["token", "list"],
        ["policy", "show"],
    ],
)
def test_read_only_commands_create_no_state(tmp_path: Path, args: list[str]) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == ExitCode.CONTROL_PLANE, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == [], "a read created files"
    assert f"no control plane state at {Path('.tritonops/state.db')}" in done.stderr
    elsewhere = _cli(tmp_path, *args, TRITONOPS_STATE=str(tmp_path / "nowhere" / "s.db"))
    assert elsewhere.returncode == ExitCode.CONTROL_PLANE and list(tmp_path.iterdir()) == []

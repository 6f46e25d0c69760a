"""The exporter of a controller replica: only while it leads does it export versions, drift and guardrails."""

from __future__ import annotations

from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.state import ModelState


def _page(exporter: ControlPlaneExporter) -> str:
    return exporter.render().decode()


def test_a_lone_watch_judges_and_a_replica_does_not_until_it_leads() -> None:
    assert "\ntritonops_controller_leader 1.0" in _page(ControlPlaneExporter())
    assert "\ntritonops_controller_leader 0.0" in _page(ControlPlaneExporter(leads=False))


def test_losing_the_lease_removes_what_the_replica_exported_and_keeps_its_counters() -> None:
    exporter = ControlPlaneExporter(leads=False)
    exporter.set_leader(True)
    exporter.set_state(ModelState(name="rf", live=2, canary=3, canary_weight=0.2))
    exporter.set_guardrail("rf", "error_rate", True)
    exporter.record_action("rf", "rollback", at=1_700_000_000.0)
    led = _page(exporter)
    assert 'tritonops_live_version{model="rf"} 2.0' in led and 'tritonops_canary_weight{model="rf"} 0.2' in led
    assert 'tritonops_guardrail_breached{guardrail="error_rate",model="rf"} 1.0' in led

    exporter.set_leader(False)
    followed = _page(exporter)
    assert "\ntritonops_controller_leader 0.0" in followed
    for family in ("tritonops_live_version{", "tritonops_canary_weight{", "tritonops_guardrail_breached{"):
        assert family not in followed, family
    assert 'tritonops_rollbacks_total{model="rf",trigger="rollback"} 1.0' in followed  # a counter never goes back

    exporter.set_leader(True)
    exporter.set_state(ModelState(name="rf", live=3, canary=None, canary_weight=0.0))
    assert 'tritonops_live_version{model="rf"} 3.0' in _page(exporter)

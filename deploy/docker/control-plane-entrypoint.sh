#!/bin/sh
# The control plane service (docker-compose, Kubernetes): join every Triton endpoint to the fleet, keep the fleet
# reconciled to the desired state (a restarted Triton comes back empty), and run `tritonops watch` for one model
# with the Prometheus exporter on.
#
#   TRITONOPS_ENDPOINTS          Triton gRPC endpoints, space separated (required)
#   TRITONOPS_WATCH_MODEL        the model whose guardrails `watch` enforces (required; promote a version first)
#   TRITONOPS_RECONCILE_SECONDS  seconds between reconciles (default 30)
#   TRITONOPS_EXPORTER_PORT      exporter port (default 9108), on every address
#   TRITONOPS_WATCH_ARGS         more `tritonops watch` options, e.g. "--policy /etc/tritonops/policy.yaml"
set -eu

: "${TRITONOPS_ENDPOINTS:?set TRITONOPS_ENDPOINTS to the Triton gRPC endpoints (host:port, space separated)}"
: "${TRITONOPS_WATCH_MODEL:?set TRITONOPS_WATCH_MODEL to the model to watch}"
reconcile_every="${TRITONOPS_RECONCILE_SECONDS:-30}"

known="$(tritonops fleet list)"
for endpoint in $TRITONOPS_ENDPOINTS; do
    if ! printf '%s\n' "$known" | grep -qxF "$endpoint"; then
        tritonops fleet add "$endpoint" --actor control-plane
    fi
done

(
    while true; do
        tritonops reconcile --actor control-plane || echo "reconcile failed; next try in ${reconcile_every} s" >&2
        sleep "$reconcile_every"
    done
) &

# shellcheck disable=SC2086  # TRITONOPS_WATCH_ARGS is a list of options on purpose
exec tritonops watch "$TRITONOPS_WATCH_MODEL" --actor control-plane \
    --metrics-port "${TRITONOPS_EXPORTER_PORT:-9108}" --metrics-address 0.0.0.0 ${TRITONOPS_WATCH_ARGS:-}

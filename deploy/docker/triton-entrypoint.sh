#!/bin/sh
# Triton in the GPU image: NGC's tritonserver with every backend of the image (onnxruntime, tensorrt, python, and
# ours, `tritonops`), so both GPU layouts of docs/gpu.md work. Flags as serving/triton.py uses on CPU: explicit
# model control (the control plane loads), summary latencies, non-strict readiness (ready = up; per-model readiness is
# /v2/models/<m>/ready, so a version switch never marks the pod unready), admin API locked when a token is set.
#
#   TRITONOPS_REPOSITORY        model repository (default /models)
#   TRITONOPS_ADMIN_TOKEN_FILE  file holding the admin token (or TRITONOPS_ADMIN_TOKEN); none = admin API open
#   TRITONSERVER_BIN, TRITON_BACKEND_DIR   where NGC puts them (defaults below)
# Extra arguments are passed to tritonserver.
set -eu

token="${TRITONOPS_ADMIN_TOKEN:-}"
if [ -z "$token" ] && [ -n "${TRITONOPS_ADMIN_TOKEN_FILE:-}" ]; then
    token="$(cat "$TRITONOPS_ADMIN_TOKEN_FILE")"
    [ -n "$token" ] || { echo "TRITONOPS_ADMIN_TOKEN_FILE=$TRITONOPS_ADMIN_TOKEN_FILE is empty" >&2; exit 2; }
fi

set -- \
    --model-repository="${TRITONOPS_REPOSITORY:-/models}" \
    --backend-directory="${TRITON_BACKEND_DIR:-/opt/tritonserver/backends}" \
    --model-control-mode=explicit \
    --http-port="${TRITON_HTTP_PORT:-8000}" --grpc-port="${TRITON_GRPC_PORT:-8001}" \
    --metrics-port="${TRITON_METRICS_PORT:-8002}" \
    --allow-metrics=true --allow-gpu-metrics=true --allow-cpu-metrics=true \
    --metrics-config=summary_latencies=true \
    --strict-readiness=false \
    "$@"
if [ -n "$token" ]; then
    set -- "$@" \
        --grpc-restricted-protocol="model-repository:admin-key=$token" \
        --http-restricted-api="model-repository:admin-key=$token"
fi
exec "${TRITONSERVER_BIN:-/opt/tritonserver/bin/tritonserver}" "$@"

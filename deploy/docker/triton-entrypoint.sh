#!/bin/sh
# Triton in the GPU image: NGC's tritonserver with every backend of the image (onnxruntime, tensorrt, python, and
# ours, `tritonops`), so both GPU layouts of docs/gpu.md work. Flags as serving/triton.py uses on CPU: explicit
# model control (the control plane loads), tcmalloc, non-strict readiness (ready = up; per-model readiness is
# /v2/models/<m>/ready, so a version switch never marks the pod unready), admin API locked when a token is set.
# No config auto-completion (every config the control plane loads is complete; completing one starts an extra
# backend stub per load), and one OpenBLAS thread for the backend stubs (their numpy does no linear algebra; the
# default pool costs each stub start about 0.1 s of CPU). Unlike the CPU default, summary latencies are on: the alert rules read their real p99, and a GPU host has the
# cores to pay for them (TRITONOPS_LATENCY_SUMMARIES=false turns them off).
#
#   TRITONOPS_REPOSITORY        model repository (default /models)
#   TRITONOPS_ADMIN_TOKEN_FILE  file holding the admin token (or TRITONOPS_ADMIN_TOKEN); none = admin API open
#   TRITONSERVER_BIN, TRITON_BACKEND_DIR   where NGC puts them (defaults below)
#   TRITONOPS_ALLOCATOR         auto (default: tcmalloc when installed, as serving/allocator.py), system (glibc)
# Extra arguments are passed to tritonserver.
set -eu
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

if [ "${TRITONOPS_ALLOCATOR:-auto}" != system ]; then
    for lib in "/usr/lib/$(uname -m)-linux-gnu/libtcmalloc_minimal.so.4" "/usr/lib/$(uname -m)-linux-gnu/libtcmalloc.so.4"; do
        if [ -f "$lib" ]; then
            export LD_PRELOAD="$lib${LD_PRELOAD:+ $LD_PRELOAD}"
            break
        fi
    done
fi

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
    --metrics-config=summary_latencies="${TRITONOPS_LATENCY_SUMMARIES:-true}" \
    --strict-readiness=false --disable-auto-complete-config \
    --http-header-forward-pattern=tritonops-route-key --grpc-header-forward-pattern=tritonops-route-key \
    "$@"
if [ -n "$token" ]; then
    set -- "$@" \
        --grpc-restricted-protocol="model-repository:admin-key=$token" \
        --http-restricted-api="model-repository:admin-key=$token"
fi
exec "${TRITONSERVER_BIN:-/opt/tritonserver/bin/tritonserver}" "$@"

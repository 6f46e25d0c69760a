# Controller image: `tritonops controller start` (API with tokens and roles, reconciler, guardrails for every model,
# /metrics, /healthz, /readyz on one port). It talks to Triton over gRPC/HTTP only: no CUDA, no Triton binary.
#
#   docker build -f deploy/docker/control-plane.Dockerfile -t tritonops/control-plane:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    TRITONOPS_REPOSITORY=/models \
    TRITONOPS_STATE=/var/lib/tritonops/state.db

WORKDIR /opt/tritonops/src
COPY pyproject.toml README.md constraints.txt ./
COPY tritonops ./tritonops
COPY converters ./converters
COPY serving ./serving
COPY control_plane ./control_plane
COPY clients ./clients
COPY loadtest ./loadtest
RUN pip install --upgrade pip && pip install -c constraints.txt '.[controller,convert]' && useradd --system --uid 10001 tritonops \
 && mkdir -p /var/lib/tritonops && chown tritonops /var/lib/tritonops

USER tritonops
WORKDIR /var/lib/tritonops
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
# SIGTERM (docker stop, a pod's termination) stops it cleanly. Any `tritonops ...` command can run instead, e.g.
# `docker compose run --rm --entrypoint tritonops controller-a token create ci --role operator`.
ENTRYPOINT ["tritonops", "controller", "start", "--host", "0.0.0.0", "--port", "8080"]

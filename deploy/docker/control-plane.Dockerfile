# Control plane image: `tritonops` (desired state, reconcile, rollout, drift, watch + Prometheus exporter).
# It talks to Triton over gRPC/HTTP only, so it needs neither CUDA nor a Triton binary.
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
COPY deploy/docker/control-plane-entrypoint.sh /usr/local/bin/tritonops-control-plane
RUN pip install --upgrade pip && pip install -c constraints.txt '.[controller,convert]' && useradd --system --uid 10001 tritonops \
 && mkdir -p /var/lib/tritonops && chown tritonops /var/lib/tritonops

USER tritonops
WORKDIR /var/lib/tritonops
EXPOSE 9108
# fleet add + reconcile loop + `tritonops watch` with the exporter (see the script); any `tritonops ...` command
# can be run instead, e.g. `docker compose run control-plane tritonops promote demo 2`.
ENTRYPOINT ["/usr/local/bin/tritonops-control-plane"]

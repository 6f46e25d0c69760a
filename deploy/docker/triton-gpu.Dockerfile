# GPU image of the tritonops backend: NVIDIA's Triton (NGC 24.10 = Triton 2.51.0, the same server as the
# nvidia-pytriton 0.7.0 wheel we run on CPU) + ONNX Runtime GPU + our package and Python-based backend.
#
# The NGC image's Python is 3.10; tritonops needs 3.11. The Python backend's stub must match the interpreter, so
# we add Python 3.11 from Ubuntu and take the 3.11 stub that the nvidia-pytriton wheel ships for the very same
# Triton release (2.51). Our backend goes next to NGC's own (onnxruntime, tensorrt, python), so both GPU layouts
# of docs/gpu.md work; deploy/docker/triton-entrypoint.sh starts the server with the flags serving/triton.py uses.
#
#   docker build -f deploy/docker/triton-gpu.Dockerfile -t tritonops/triton-gpu:0.1.0 .
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}

# An onnxruntime-gpu built for CUDA 12 + cuDNN 9 (NGC 24.10: CUDA 12.6, cuDNN 9.5); the newest wheels (1.31)
# target CUDA 13. Our exports (opset 17, IR 8 here) load on it. Models converted with instance kind KIND_GPU run
# on the CUDA (optionally TensorRT) provider (serving/scoring.py).
ARG ONNXRUNTIME_GPU_VERSION=1.22.0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/tritonops/venv \
    PATH=/opt/tritonops/venv/bin:$PATH \
    PYTHONPATH=/opt/tritonops/venv/lib/python3.11/site-packages \
    TRITONOPS_REPOSITORY=/models

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv libpython3.11 libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv "$VIRTUAL_ENV"

WORKDIR /opt/tritonops/src
COPY pyproject.toml README.md constraints.txt ./
COPY tritonops ./tritonops
COPY converters ./converters
COPY serving ./serving
COPY control_plane ./control_plane
COPY clients ./clients
COPY loadtest ./loadtest

# onnxruntime-gpu replaces onnxruntime (the two can't share an environment): install ours, then swap.
RUN pip install --upgrade pip \
 && pip install -c constraints.txt '.[server,postgresql]' \
 && pip uninstall -y onnxruntime \
 && pip install '.[gpu]' "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
 && stub="$(python -c 'import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent / "tritonserver/python_backend_stubs/3.11/triton_python_backend_stub")')" \
 && cp "$stub" /opt/tritonserver/backends/python/triton_python_backend_stub \
 && mkdir -p /opt/tritonserver/backends/tritonops \
 && cp serving/backend/tritonops/model.py /opt/tritonserver/backends/tritonops/model.py \
 && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()"
COPY deploy/docker/triton-entrypoint.sh /usr/local/bin/tritonops-triton

WORKDIR /opt/tritonops
# HTTP, gRPC, metrics
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"
ENTRYPOINT ["/usr/local/bin/tritonops-triton"]

"""A TLS gateway (Debian's nginx) in front of one Triton's HTTP and gRPC ports, with certificates made by openssl.

``make_certificates`` writes a throwaway CA, a server certificate for a given name and a client certificate (both
signed by that CA). ``TlsGateway`` runs nginx terminating TLS on two loopback ports: HTTPS proxied to Triton's HTTP
port, HTTP/2 + TLS passed to its gRPC port; with ``require_client_cert`` it demands a client certificate signed by
the CA (mutual TLS), as an ingress with client authentication would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tritonops.loadtest.local_server import LocalServer
from tritonops.serving.triton import free_port, port_is_free

LISTEN = "127.0.0.1"


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path, server_name: str) -> Certificates:
    """A CA, a server certificate for ``server_name`` and a client certificate, as PEM files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=tritonops test CA")  # fmt: skip
    for who, subject, extension in (
        ("server", server_name, f"subjectAltName=DNS:{server_name}\nextendedKeyUsage=serverAuth"),
        ("client", "tritonops test client", "extendedKeyUsage=clientAuth"),
    ):
        key, request, cert = directory / f"{who}.key", directory / f"{who}.csr", directory / f"{who}.pem"
        extensions = directory / f"{who}.ext"
        extensions.write_text(extension + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
                "-subj", f"/CN={subject}")  # fmt: skip
        openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                "-out", str(cert), "-days", "2", "-extfile", str(extensions))  # fmt: skip
    return Certificates(ca, directory / "server.pem", directory / "server.key", directory / "client.pem",
                        directory / "client.key")  # fmt: skip


class TlsGateway(LocalServer):
    """nginx on ``https_port`` (-> Triton HTTP) and ``grpcs_port`` (-> Triton gRPC), TLS terminated."""

    def __init__(
        self,
        directory: Path,
        certificates: Certificates,
        *,
        http_upstream: str,
        grpc_upstream: str,
        require_client_cert: bool = True,
    ) -> None:
        self.directory = directory
        self.certificates = certificates
        self.http_upstream, self.grpc_upstream = http_upstream, grpc_upstream
        self.require_client_cert = require_client_cert
        self.https_port, self.grpcs_port = free_port(LISTEN), free_port(LISTEN)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def https_address(self) -> str:
        return f"{LISTEN}:{self.https_port}"

    @property
    def grpcs_address(self) -> str:
        return f"{LISTEN}:{self.grpcs_port}"

    def _config(self) -> str:
        c, d = self.certificates, self.directory
        tls = f"ssl_certificate {c.server_cert}; ssl_certificate_key {c.server_key};"
        if self.require_client_cert:
            tls += f" ssl_client_certificate {c.ca}; ssl_verify_client on;"
        temp = " ".join(
            f"{kind}_temp_path {d / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
{user}
worker_processes 1;
daemon off;
pid {d / "nginx.pid"};
error_log {d / "error.log"} info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    {temp}
    upstream triton_http {{ server {self.http_upstream}; keepalive 16; }}
    server {{
        listen {LISTEN}:{self.https_port} ssl;
        {tls}
        location / {{
            proxy_pass http://triton_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            client_max_body_size 64m;
        }}
    }}
    server {{
        listen {LISTEN}:{self.grpcs_port} ssl http2;
        {tls}
        location / {{ grpc_pass grpc://{self.grpc_upstream}; }}
    }}
}}
"""

    def start(self) -> TlsGateway:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nginx.conf"
        config.write_text(self._config())
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        log = (self.directory / "stderr").open("wb")
        self.process = subprocess.Popen([binary, "-c", str(config), "-p", str(self.directory)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while any(port_is_free(p, LISTEN) for p in (self.https_port, self.grpcs_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                errors = (self.directory / "stderr").read_text(errors="replace")
                raise RuntimeError(f"nginx did not start (exit {self.process.poll()}): {errors[-2000:]}")
            time.sleep(0.05)
        return self

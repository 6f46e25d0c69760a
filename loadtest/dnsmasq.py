"""A DNS server on a loopback port (Debian's ``dnsmasq``) whose answers a test or benchmark sets and changes.

It is the authority for ``.test`` (RFC 6761): the names given to ``answer`` get their addresses (from a hosts file
it re-reads on SIGHUP, TTL 0), every other ``.test`` name NXDOMAIN. It forwards nothing and reads no system
configuration: what a Kubernetes headless Service looks like to a client, without a cluster.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tritonops.loadtest.local_server import LocalServer
from tritonops.serving.triton import free_port

LISTEN = "127.0.0.1"
DOMAIN = "test"


class Dnsmasq(LocalServer):
    """``with Dnsmasq(tmp_path) as dns: dns.answer({"triton.test": ["127.0.0.2"]})``; ask ``dns.address``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hosts = directory / "hosts"
        self.port = free_port(LISTEN)
        self.process: subprocess.Popen[bytes] | None = None
        self._answers: dict[str, list[str]] = {}

    @property
    def address(self) -> tuple[str, int]:
        return LISTEN, self.port

    def start(self) -> Dnsmasq:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text("")
        argv = [
            binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",  # none of the system's configuration
            "--no-resolv",
            "--no-hosts",
            "--no-negcache",
            f"--local=/{DOMAIN}/",  # authoritative: unknown names are NXDOMAIN, never forwarded
            f"--addn-hosts={self.hosts}",
            f"--listen-address={LISTEN}",
            "--bind-interfaces",
            f"--port={self.port}",
            "--local-ttl=0",
            f"--pid-file={self.directory / 'dnsmasq.pid'}",
            f"--user={getpass.getuser()}",  # stay who we are: it reads the hosts file in our directory
            f"--log-facility={self.directory / 'dnsmasq.log'}",
        ]
        log = (self.directory / "stderr").open("wb")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_serving({})
        return self

    def answer(self, answers: Mapping[str, Sequence[str]]) -> None:
        """Answer each name (under ``.test``) with these addresses from now on (every other name: NXDOMAIN)."""
        outside = [name for name in answers if not name.endswith(f".{DOMAIN}")]
        if outside:
            raise ValueError(f"dnsmasq answers names under .{DOMAIN} only, got {outside}")
        self._answers = {name: list(addresses) for name, addresses in answers.items()}
        lines = [f"{address} {name}" for name, addresses in self._answers.items() for address in addresses]
        self.hosts.write_text("\n".join(lines) + "\n")
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)  # re-read the hosts file
        self._wait_serving(self._answers)

    def _wait_serving(self, answers: Mapping[str, Sequence[str]], timeout: float = 20.0) -> None:
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [LISTEN]
        resolver.port = self.port
        resolver.lifetime = 1.0
        probe = next(iter(answers), f"probe.{DOMAIN}")
        wanted = {a for a in answers.get(probe, ()) if ":" not in a}
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited {self.process.returncode}: {self._log()}")
            try:
                got = {r.to_text() for r in resolver.resolve(probe, "A")}
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                got = set()
            except dns.exception.DNSException:
                got = None
            if got is not None and got == wanted:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq did not serve {probe} -> {sorted(wanted)} (got {got}): {self._log()}")
            time.sleep(0.05)

    def _log(self) -> str:
        parts = [p.read_text(errors="replace")[-2000:] for p in (self.directory / "stderr",) if p.exists()]
        return " ".join(parts).strip()

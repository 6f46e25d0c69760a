"""Which Triton servers make up the fleet right now: the static list, a DNS name, or a Service's EndpointSlices.

``discover`` is asked again before every reconcile and rollout, so a server that appears is driven on the next
pass and one that disappears is simply no longer in the list (nothing is unloaded from it, nothing fails).

- static: the endpoints kept in the state (``tritonops fleet add``).
- dns: every A and AAAA record of one name, each with the same gRPC port: the Kubernetes headless-Service
  convention (one record per ready pod). A name that does not exist (NXDOMAIN) is an empty fleet; a DNS server that
  does not answer is an error, so a DNS outage never looks like a fleet that left.
- endpointslice: the ready endpoints of a Service's EndpointSlices (``kubernetes.io/service-name`` label), through
  the official client with the in-cluster service account (or a kubeconfig outside a cluster).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tritonops.control_plane.errors import DiscoveryError
from tritonops.control_plane.state import StateStore
from tritonops.settings import FleetSource

if TYPE_CHECKING:
    from kubernetes.client import DiscoveryV1Api, V1EndpointSlice

log = logging.getLogger("tritonops.discovery")

SERVICE_LABEL = "kubernetes.io/service-name"


def discover(
    source: FleetSource, store: StateStore, *, timeout: float = 5.0, kubernetes_api: DiscoveryV1Api | None = None
) -> list[str]:
    """The fleet's ``host:port`` gRPC endpoints now, sorted."""
    if source.kind == "dns":
        return resolve_dns(source, timeout=timeout)
    if source.kind == "endpointslice":
        return endpointslice_endpoints(source, timeout=timeout, api=kubernetes_api)
    return store.fleet()


def endpoint_of(address: str, port: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    try:
        is_v6 = ipaddress.ip_address(address).version == 6
    except ValueError:
        is_v6 = False
    return f"[{address}]:{port}" if is_v6 else f"{address}:{port}"


def resolve_dns(source: FleetSource, *, timeout: float = 5.0) -> list[str]:
    """One endpoint per A/AAAA record of ``source.name``, on ``source.port``."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=source.nameserver is None)
    if source.nameserver is not None:
        resolver.nameservers = [source.nameserver[0]]
        resolver.port = source.nameserver[1]
    resolver.lifetime = timeout
    addresses: set[str] = set()
    for record_type in ("A", "AAAA"):
        try:
            answer = resolver.resolve(source.name, record_type, search=source.nameserver is None)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            server = "the system resolver" if source.nameserver is None else endpoint_of(*source.nameserver)
            raise DiscoveryError(str(source), f"{record_type} lookup through {server} failed ({exc})") from exc
        addresses.update(record.to_text() for record in answer)
    endpoints = sorted(endpoint_of(a, source.port) for a in addresses)
    log.debug("%s: %d endpoints", source, len(endpoints))
    return endpoints


def endpoints_from_slices(slices: Iterable[V1EndpointSlice], port: str) -> list[str]:
    """The ready addresses of ``slices`` on the port named (or numbered) ``port``; not-ready ones are left out."""
    found: set[str] = set()
    for piece in slices:
        numbers = [p.port for p in piece.ports or () if p.port is not None and port in (p.name, str(p.port))]
        if not numbers:
            continue
        for endpoint in piece.endpoints or ():
            conditions = endpoint.conditions
            if conditions is not None and conditions.ready is False:  # None means unknown: counted as ready
                continue
            found.update(endpoint_of(address, numbers[0]) for address in endpoint.addresses)
    return sorted(found)


def endpointslice_endpoints(
    source: FleetSource, *, timeout: float = 5.0, api: DiscoveryV1Api | None = None
) -> list[str]:
    """The ready endpoints of Service ``source.namespace/source.name`` from the Kubernetes API."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        api = api or _in_cluster_api()
        listing: Any = api.list_namespaced_endpoint_slice(
            source.namespace, label_selector=f"{SERVICE_LABEL}={source.name}", _request_timeout=timeout
        )
    except ApiException as exc:
        raise DiscoveryError(
            str(source), f"the Kubernetes API refused the listing ({exc.status} {exc.reason})"
        ) from exc
    except HTTPError as exc:
        raise DiscoveryError(str(source), f"the Kubernetes API did not answer ({exc})") from exc
    return endpoints_from_slices(listing.items, source.port)


def _in_cluster_api() -> DiscoveryV1Api:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # the pod service account
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise DiscoveryError(
                "endpointslice", f"no in-cluster service account and no usable kubeconfig ({exc})"
            ) from exc
    return client.DiscoveryV1Api()

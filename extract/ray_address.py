"""Ray cluster addresses, checked without Ray: what `--ray-address` means and whether a Ray head is
there (a TCP connection, then one gRPC call the GCS answers). Ray itself waits minutes, or forever,
for a GCS that is not there; these answer in seconds, with the one wording that extract,
embed-targets, ablate and doctor share."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def parse_ray_address(address: str) -> tuple[str, int]:
    """host, port of a Ray address: ray://host[:10001] (Ray client) or host[:6379] (GCS)."""
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [ipv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, ""
    if not host:
        raise ValueError(f"no host in {address!r}")
    return host, int(port) if port else (10001 if client else 6379)


def auto_address() -> str | None:
    """The cluster `--ray-address auto` means: $RAY_ADDRESS, else the one `ray start` recorded on this
    machine (/tmp/ray/ray_current_cluster); None when there is none."""
    env = os.environ.get("RAY_ADDRESS")
    if env and env != "auto":
        return env
    try:
        text = Path("/tmp/ray/ray_current_cluster").read_text().strip()
    except OSError:
        return None
    return text or None


@dataclass
class AddressCheck:
    """What `check_address` found about a cluster address, without starting or joining Ray."""

    address: str
    target: str | None
    """The address itself, or what `auto` resolved to (None: no running cluster found)."""
    host: str | None = None
    port: int | None = None
    unreadable: str | None = None
    """Why the address does not parse (None: it does)."""
    refused: str | None = None
    """Why host:port does not accept a TCP connection (None: it does, or it was not tried)."""
    not_ray: str | None = None
    """What answers at host:port instead of a Ray GCS (None: the GCS answered, or it was not tried)."""


def address_problem(got: AddressCheck) -> tuple[str, str] | None:
    """(problem, fix) when `got` shows that no Ray cluster can be there; None when one may be.
    The one wording of `extract --ray-address` (before Ray is asked) and of `doctor`."""
    if got.target is None:
        return ("--ray-address auto: no running cluster found ($RAY_ADDRESS unset, no /tmp/ray/ray_current_cluster)",
                "start one with `ray start --head`, or pass --ray-address HOST:PORT")
    if got.unreadable is not None:
        return (f"cannot read Ray address {got.target!r} ({got.unreadable})",
                "use HOST:PORT (the GCS, default 6379) or ray://HOST:PORT (Ray client, default 10001)")
    if got.refused is not None:
        return (f"no Ray cluster at {got.target}: {got.host}:{got.port} does not accept a TCP connection "
                f"({got.refused}, {CONNECT_TIMEOUT_S:.0f} s timeout)",
                "start the cluster (`ray start --head` on the head node; `ray status` there prints its address), "
                "check host, port and firewall, or drop --ray-address to use a local Ray")
    if got.not_ray is not None:
        return (f"no Ray cluster at {got.target}: {got.host}:{got.port} accepts a connection but is not a Ray head "
                f"({got.not_ray})",
                "pass the GCS address of the head (`ray status` on the head node prints it; the default port is "
                "6379; 8265 is the dashboard's), or ray://HOST:10001 for Ray client")
    return None


def require_reachable(address: str | None) -> None:
    """One SltPipeError, within seconds, when `address` cannot be a Ray cluster: Ray itself waits
    minutes for a GCS that is not there. Stages call it first, before any other work; None passes."""
    from cache.errors import SltPipeError

    if address and address != "local":
        problem = address_problem(check_address(address))
        if problem is not None:
            raise SltPipeError(problem[0], fix=problem[1])


CONNECT_TIMEOUT_S = 2.0
"""How long one TCP connection to a cluster address may take before it counts as unreachable."""
GCS_TIMEOUT_S = 5.0
"""How long the GCS may take to answer one call before the address counts as not a Ray head."""
GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"
"""A call every Ray GCS serves (an empty request), made raw so that no Ray module is imported."""


def check_address(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> AddressCheck:
    """Resolve `auto`, parse the address, try one TCP connection to it, then ask what answers there
    (`gcs_answer`); nothing else is done."""
    import socket

    target = auto_address() if address == "auto" else address
    out = AddressCheck(address, target)
    if target is None:
        return out
    try:
        out.host, out.port = parse_ray_address(target)
    except ValueError as err:
        out.unreadable = str(err)
        return out
    try:
        with socket.create_connection((out.host, out.port), timeout=timeout_s):
            pass
    except OSError as err:
        out.refused = "timed out" if isinstance(err, socket.timeout) else (err.strerror or str(err))
        return out
    out.not_ray = gcs_answer(out.host, out.port, client=target.startswith("ray://"))
    return out


def gcs_answer(host: str, port: int, *, client: bool, timeout_s: float = GCS_TIMEOUT_S) -> str | None:
    """None when a Ray GCS (or, with `client`, a gRPC server such as Ray client's) answers at host:port;
    else what answered instead, in a few words. A refused authentication token is a GCS answering:
    ray_session names that error itself."""
    import grpc

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        probe = channel.unary_unary(GCS_PROBE, request_serializer=lambda _: b"", response_deserializer=lambda b: b)
        try:
            probe(None, timeout=timeout_s)
        except grpc.RpcError as err:
            code, details = err.code(), (err.details() or "").strip()
            if code == grpc.StatusCode.UNAUTHENTICATED or (client and code == grpc.StatusCode.UNIMPLEMENTED):
                return None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return "a gRPC server that is not a Ray GCS answers (is it Ray client's port? use ray://HOST:PORT)"
            if "parsing http/2" in details.lower() or "http1" in details.lower():
                return "it answers in another protocol than gRPC, as a web server or Ray's dashboard does"
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return f"it does not speak gRPC: no answer in {timeout_s:.0f} s"
            return f"no Ray GCS answer: {code.name.lower()}{f', {details}' if details else ''}"
    return None

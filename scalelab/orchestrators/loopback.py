"""Keep a swarm's published ports to this machine: the routing mesh listens on every interface.

Docker Swarm cannot publish a port on one address (compose can: ``127.0.0.1:<port>:<port>``), so
the lab's ports would be open to the whole network. Docker's documented place for such a
policy is the ``DOCKER-USER`` chain, which sees every packet the engine forwards to a container
before its own rules: a rule per port there drops connections to it that arrived on any
interface but loopback. Connections from this machine to 127.0.0.1 are not forwarded, so they
pass. The rules carry a comment, so ``scalelab down`` removes exactly these and nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

__all__ = ["COMMENT", "FirewallError", "close_to_network", "guarded_ports", "open_to_network"]

CHAIN = "DOCKER-USER"
COMMENT = "scalelab: published port, this machine only"


class FirewallError(RuntimeError):
    """The rules could not be read or changed; the message says what to do."""


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise FirewallError("iptables is not installed (Debian: apt-get install iptables)")
    return subprocess.run([binary, *args], capture_output=True, text=True)


def _rule(port: int) -> list[str]:
    return [
        CHAIN, "!", "-i", "lo", "-p", "tcp",
        "-m", "conntrack", "--ctorigdstport", str(port), "--ctdir", "ORIGINAL",
        "-m", "comment", "--comment", COMMENT, "-j", "DROP",
    ]  # fmt: skip


def close_to_network(ports: Iterable[int]) -> None:
    """Drop connections to ``ports`` that come from the network; raise FirewallError when it cannot."""
    for port in sorted(set(ports)):
        if _iptables("-C", *_rule(port)).returncode == 0:
            continue  # already there (a second `up`)
        done = _iptables("-I", *_rule(port))
        if done.returncode != 0:
            raise FirewallError(
                f"cannot keep port {port} to this machine: iptables said {done.stderr.strip()!r} "
                "(it needs root and a Docker engine that made the DOCKER-USER chain)"
            )


def guarded_ports() -> list[int]:
    """Return the ports the lab's rules keep to this machine now."""
    listing = _iptables("-S", CHAIN)
    if listing.returncode != 0:
        return []
    ports = []
    for line in listing.stdout.splitlines():
        if COMMENT in line and "--ctorigdstport" in line:
            ports.append(int(line.split("--ctorigdstport", 1)[1].split()[0]))
    return sorted(ports)


def open_to_network() -> list[int]:
    """Remove the lab's rules (only those); return the ports they guarded."""
    ports = guarded_ports()
    for port in ports:
        _iptables("-D", *_rule(port))
    return ports

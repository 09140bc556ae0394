"""
Read the packet dumps in C{shared/wire-traces/*.txt}: every packet the
logging proxy saw between a real libvirt client and libvirtd, with its
direction and bytes (length word included), grouped by connection.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from tests.shared import require_shared

_PACKET = re.compile(r"^\[\s*[\d.]+ ms\] (C->S|S->C) len=(\d+) ")
_HEX = re.compile(r"^\s{4}[0-9a-f]{6}  ((?:[0-9a-f]{2} ?)+?)\s+\|")
_CONNECTION = re.compile(r"^connection #(\d+)")


@dataclass
class Packet:
    """
    One packet of a trace.

    @ivar direction: C{"C->S"} or C{"S->C"}.
    @ivar data: the packet, length word included (only its start when
        the dump was cut short).
    @ivar complete: C{False} when the trace did not dump every byte.
    """

    direction: str
    data: bytes
    complete: bool = True


@dataclass
class Connection:
    """
    The packets of one client connection, in capture order.

    @ivar number: the proxy's connection number.
    """

    number: int
    packets: list[Packet] = field(default_factory=list)

    def client_bytes(self) -> list[bytes]:
        """
        @return: what the client sent, packet by packet.
        """
        return [p.data for p in self.packets if p.direction == "C->S"]

    def complete_packets(self) -> list[Packet]:
        """
        @return: the packets dumped in full.
        """
        return [p for p in self.packets if p.complete]


def traces_dir() -> str:
    """
    @return: the wire-traces directory (the test is skipped without it).
    """
    return require_shared("wire-traces")


def trace_files() -> list[str]:
    """
    @return: every trace file, stub traces included.
    """
    base = traces_dir()
    return sorted(glob.glob(os.path.join(base, "*.txt")) + glob.glob(
        os.path.join(base, "stub", "*.txt")))


def parse_trace(path: str) -> list[Connection]:
    """
    @param path: a trace file (absolute, or relative to the traces directory).
    @return: its connections with their packets.
    @raise ValueError: if a dump's byte count does not match its length word.
    """
    if not os.path.isabs(path):
        path = os.path.join(traces_dir(), path)
    connections: list[Connection] = []
    current: Connection | None = None
    pending: tuple[str, int] | None = None
    buf = bytearray()
    cut = False

    def flush() -> None:
        nonlocal pending, buf, cut
        if pending is not None:
            direction, length = pending
            if not cut and len(buf) != length:
                raise ValueError(f"{path}: packet of {length} bytes dumped as {len(buf)}")
            assert current is not None
            current.packets.append(Packet(direction, bytes(buf), not cut))
        pending = None
        buf = bytearray()
        cut = False

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _CONNECTION.match(line)
            if m:
                flush()
                current = Connection(int(m.group(1)))
                connections.append(current)
                continue
            m = _PACKET.match(line)
            if m:
                flush()
                if current is None:
                    current = Connection(0)
                    connections.append(current)
                pending = (m.group(1), int(m.group(2)))
                continue
            if pending is not None:
                m = _HEX.match(line)
                if m:
                    buf += bytes.fromhex(m.group(1))
                elif "further bytes not hex-dumped" in line:
                    cut = True
                elif line.strip() and not line.lstrip().startswith("hex ("):
                    flush()
        flush()
    return connections

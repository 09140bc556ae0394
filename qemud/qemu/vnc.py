# -*- test-case-name: tests.qemu.test_vnc -*-
"""
VNC port allocation for C{<graphics type='vnc' autoport='yes'>}.

Like libvirt's C{virPortAllocator}: the lowest port from 5900 up that is
neither reserved by another guest of this daemon nor in use on the host
(probed by binding a socket on the listen address).  The driver acquires a
port before building the command line, writes it into the live definition,
and releases it when the guest exits.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from qemud.errors import OperationFailedError

VNC_PORT_MIN = 5900
VNC_PORT_MAX = 65535


def port_is_free(listen: str | None, port: int) -> bool:
    """
    Probe a TCP port by binding it (with C{SO_REUSEADDR}, as QEMU does).

    @param listen: the address QEMU will listen on (C{None}: all IPv4 addresses).
    @param port: the port.
    @return: whether binding succeeded.
    @raise OSError: for errors other than "address in use".
    """
    address = listen or "0.0.0.0"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        sock.close()
    return True


class VncPortAllocator:
    """
    Hands out VNC ports, never the same one twice while it is reserved.

    @ivar reserved: the ports currently handed out.
    """

    def __init__(
        self,
        start: int = VNC_PORT_MIN,
        end: int = VNC_PORT_MAX,
        probe: Callable[[str | None, int], bool] = port_is_free,
    ) -> None:
        """
        @param start: the lowest port to hand out.
        @param end: the highest.
        @param probe: tells whether a port is free on the host.
        """
        self._start = start
        self._end = end
        self._probe = probe
        self.reserved: set[int] = set()

    def acquire(self, listen: str | None = None) -> int:
        """
        Reserve the lowest free port.

        @param listen: the VNC listen address (probed there).
        @return: the port.
        @raise OperationFailedError: when no port in the range is free.
        """
        for port in range(self._start, self._end + 1):
            if port in self.reserved:
                continue
            try:
                free = self._probe(listen, port)
            except OSError as e:
                raise OperationFailedError(
                    f"cannot probe VNC port {port} on {listen or '0.0.0.0'}: {e.strerror or e}"
                ) from e
            if free:
                self.reserved.add(port)
                return port
        raise OperationFailedError(
            f"Unable to find an unused port in range 'display' ({self._start}-{self._end})"
        )

    def reserve(self, port: int) -> None:
        """
        Mark a port as taken (a re-attached guest already uses it).
        """
        self.reserved.add(port)

    def release(self, port: int) -> None:
        """
        Give a port back; releasing a port that is not reserved does nothing.
        """
        self.reserved.discard(port)

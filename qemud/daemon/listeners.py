# -*- test-case-name: tests.daemon.test_listeners -*-
"""
Listening addresses: parsing C{HOST:PORT} options and building endpoints.

UNIX sockets are made with a lock file (a stale socket left by a killed
daemon is replaced; a live daemon on the same path is refused), TCP
listeners on IPv4 or IPv6 literal addresses.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IReactorTCP, IReactorUNIX, IStreamServerEndpoint

DEFAULT_TCP_PORT = 16509
DEFAULT_TLS_PORT = 16514


class AddressError(ValueError):
    """A C{HOST:PORT} option could not be understood."""


@dataclass(frozen=True)
class HostPort:
    """
    A TCP listening address.

    @ivar host: an IPv4 or IPv6 literal, or C{localhost}.
    @ivar port: the TCP port.
    """

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        """
        @return: whether C{host} is an IPv6 literal.
        """
        return ":" in self.host

    @property
    def is_loopback(self) -> bool:
        """
        @return: whether C{host} is a loopback address (127.0.0.0/8, ::1, localhost).
        """
        if self.host == "localhost":
            return True
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int) -> HostPort:
    """
    Parse C{HOST}, C{HOST:PORT}, C{[V6]} or C{[V6]:PORT}.

    @param text: the option value.
    @param default_port: the port when none is given.
    @raise AddressError: when the host is not an IP literal or C{localhost},
        or the port is not a number from 1 to 65535.
    """
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"missing ']' in address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise AddressError(f"unexpected {rest!r} after ']' in address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise AddressError(
                f"host {host!r} in {text!r} is not an IPv4/IPv6 address or 'localhost'"
            ) from None
    port = default_port
    if port_text or text.endswith(":"):
        # ASCII digits only: str.isdigit() also accepts "²" or "٣".
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
            raise AddressError(f"port {port_text!r} in {text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return HostPort("127.0.0.1" if host == "localhost" else host, port)


def tcp_endpoint(reactor: IReactorTCP, address: HostPort) -> IStreamServerEndpoint:
    """
    @return: a TCP server endpoint bound to C{address} (IPv4 or IPv6).
    """
    if address.is_ipv6:
        return TCP6ServerEndpoint(reactor, address.port, interface=address.host)
    return TCP4ServerEndpoint(reactor, address.port, interface=address.host)


def unix_endpoint(reactor: IReactorUNIX, path: str, mode: int) -> IStreamServerEndpoint:
    """
    @param path: the socket path.
    @param mode: its permission bits (0600 read-write, 0666 read-only).
    @return: a UNIX server endpoint with a lock file beside the socket.
    """
    return UNIXServerEndpoint(reactor, path, mode=mode, wantPID=True)

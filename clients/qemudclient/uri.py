# -*- test-case-name: tests.client.test_uri -*-
"""
Connection URIs: ours (C{qemud://}) and libvirt's (C{qemu://}).

L{parse_uri} is pure: it reads the environment only through the
C{environ} argument, so every case is a table row in the tests.

======================================  =========  ======================================
URI                                     transport  where
======================================  =========  ======================================
C{qemud:///session}, C{qemu:///session}  unix       C{$XDG_RUNTIME_DIR/qemud/qemud-sock},
                                                   else C{~/.qemud.d/sock}
C{qemud:///system}, C{qemu:///system}    unix       C{/run/qemud/qemud-sock} (C{-ro} when
                                                   read-only)
C{qemu+unix:///system?socket=PATH}       unix       C{PATH}
C{qemud://host[:port]/}, C{qemu://host/}  tls        16514
C{qemud+tcp://host[:port]/}, C{qemu+tcp}  tcp        16509
C{qemu+tls://host/system?pkipath=DIR}    tls        16514
======================================  =========  ======================================

The name sent in C{CONNECT_OPEN} follows libvirt: transport, host, port and
parameters are stripped and the driver is C{qemu}, so C{qemu+tcp://h/system},
C{qemud+unix:///system?socket=...} and C{qemud:///system} all open
C{qemu:///system}.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from qemudclient.errors import InvalidURIError

Transport = Literal["unix", "tcp", "tls"]

TCP_PORT = 16509
TLS_PORT = 16514
SYSTEM_SOCKET = "/run/qemud/qemud-sock"

_DRIVERS = ("qemu", "qemud")
_TRANSPORTS: tuple[Transport, ...] = ("unix", "tcp", "tls")
_TRUE = ("1", "yes", "true")


@dataclass(frozen=True)
class ParsedURI:
    """
    A connection URI, taken apart.

    @ivar uri: the URI as given.
    @ivar driver: C{"qemu"} or C{"qemud"}.
    @ivar transport: C{"unix"}, C{"tcp"} or C{"tls"}.
    @ivar host: the host for TCP/TLS; C{None} for UNIX sockets.
    @ivar port: the port for TCP/TLS (the default filled in); C{None} for UNIX.
    @ivar path: the URI path (C{"/system"}, C{"/session"}, C{"/"}).
    @ivar socket: the UNIX socket path; C{None} for TCP/TLS.
    @ivar pkipath: the C{pkipath=} parameter (TLS files directory), if any.
    @ivar no_verify: the C{no_verify=1} parameter: do not verify the server's
        certificate.
    @ivar name: the name sent in C{CONNECT_OPEN}.
    @ivar params: every query parameter, decoded.
    """

    uri: str
    driver: str
    transport: Transport
    host: str | None
    port: int | None
    path: str
    socket: str | None
    pkipath: str | None
    no_verify: bool
    name: str
    params: Mapping[str, str] = field(default_factory=dict)


def session_socket(environ: Mapping[str, str], home: str) -> str:
    """
    @param environ: the environment (for C{XDG_RUNTIME_DIR}).
    @param home: the user's home directory (the fallback's base).
    @return: the session daemon's read-write socket.
    """
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "qemud", "qemud-sock")
    return os.path.join(home, ".qemud.d", "sock")


def default_uri(environ: Mapping[str, str], euid: int) -> str:
    """
    @param environ: the environment (for C{QEMUD_DEFAULT_URI}).
    @param euid: the effective user id.
    @return: the URI to use when none was given: C{$QEMUD_DEFAULT_URI}, else
        C{qemud:///system} for root and C{qemud:///session} for anyone else.
    """
    configured = environ.get("QEMUD_DEFAULT_URI")
    if configured:
        return configured
    return "qemud:///system" if euid == 0 else "qemud:///session"


def parse_uri(
    uri: str,
    *,
    readonly: bool = False,
    environ: Mapping[str, str] | None = None,
    home: str | None = None,
) -> ParsedURI:
    """
    Take a connection URI apart and work out where to connect.

    @param uri: e.g. C{"qemud:///session"} or C{"qemu+tls://h/system?pkipath=/p"}.
    @param readonly: whether the connection will be read-only; picks the
        C{-ro} system socket.
    @param environ: the environment (default C{os.environ}).
    @param home: the home directory (default C{~}).
    @return: the parsed URI.
    @raise InvalidURIError: for a malformed URI, an unknown driver or
        transport, or a host on a UNIX socket URI.
    """
    if environ is None:
        environ = os.environ
    if home is None:
        home = environ.get("HOME") or os.path.expanduser("~")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as e:
        raise InvalidURIError(f"Unable to parse URI {uri}: {e}") from e
    scheme = parts.scheme.lower()
    if not scheme or "://" not in uri:
        raise InvalidURIError(f"Unable to parse URI {uri}: no scheme")
    driver, _, explicit = scheme.partition("+")
    if driver not in _DRIVERS:
        raise InvalidURIError(f"no connection driver available for {uri}")
    host = parts.hostname or None
    if explicit:
        if explicit not in _TRANSPORTS:
            raise InvalidURIError(
                f"remote_open: transport in URL not recognised (should be tls|unix|tcp): {explicit}"
            )
        transport: Transport = explicit
    else:
        transport = "tls" if host else "unix"
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = unquote(parts.path) or "/"
    sock: str | None = None
    if transport == "unix":
        if host:
            raise InvalidURIError(f"Unable to use a host with a UNIX socket URI: {uri}")
        sock = params.get("socket")
        if not sock:
            if path.rstrip("/") == "/session":
                sock = session_socket(environ, home)
            elif path.rstrip("/") in ("/system", ""):
                sock = SYSTEM_SOCKET + ("-ro" if readonly else "")
            else:
                raise InvalidURIError(
                    f"unexpected QEMU URI path '{path}', try qemud:///system or qemud:///session"
                )
        port = None
    else:
        if not host:
            raise InvalidURIError(f"Unable to parse URI {uri}: a {transport} URI needs a host")
        if port is None:
            port = TLS_PORT if transport == "tls" else TCP_PORT
    return ParsedURI(
        uri=uri,
        driver=driver,
        transport=transport,
        host=host if transport != "unix" else None,
        port=port,
        path=path,
        socket=sock,
        pkipath=params.get("pkipath") or None,
        no_verify=params.get("no_verify", "").lower() in _TRUE,
        name="qemu://" + path,
        params=params,
    )

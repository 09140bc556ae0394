# -*- test-case-name: tests.client.test_transport -*-
"""
Byte streams to a daemon: UNIX socket, TCP, and TLS with libvirt's
confirmation byte.

After the TLS handshake a libvirt server checks our certificate (and its DN
allow-list) and then sends one byte, C{0x01}, inside the TLS session; only
then does the RPC stream start.  Anything else means the server refused us;
EOF means the same.  L{ConfirmedEndpoint} hides that from the RPC protocol:
it starts the protocol only after the byte arrived, and fails the connect
otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IAddress, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from qemud.errors import QemudError
from qemudclient.errors import AuthFailed, NoSupport, error_class
from qemudclient.uri import ParsedURI

CONFIRMATION = b"\x01"

_TLS_HELPERS = ("qemud.tlsfiles", "qemud.daemon.tls")


def client_tls_options(hostname: str, pki_dir: str | None, no_verify: bool) -> Any:
    """
    Build the TLS client context from the shared helper (libvirt's PKI layout).

    @param hostname: the server's name as written in the URI.
    @param pki_dir: the C{pkipath=} directory, or C{None} for the defaults.
    @param no_verify: do not fail on a bad server certificate.
    @return: an C{IOpenSSLClientConnectionCreator}.
    @raise NoSupport: when no TLS helper is installed.
    @raise QemudClientError: when a TLS file is missing or unusable.
    """
    for name in _TLS_HELPERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        helper: Callable[[str, str | None, bool], Any] | None = getattr(
            module, "client_tls_options", None
        )
        if helper is not None:
            try:
                return helper(hostname, pki_dir, no_verify)
            except QemudError as e:
                raise error_class(e.code)(e.message, code=e.code, domain=e.domain) from e
    raise NoSupport("TLS transport is not available: no client_tls_options helper installed")


class _ConfirmationProtocol(Protocol):
    """
    Wait for the confirmation byte, then hand the stream to the real protocol.

    @ivar wrapped: the RPC protocol, connected once the byte arrived.
    @ivar confirmed: fires with C{wrapped} once confirmed, fails otherwise.
    """

    def __init__(self, wrapped: Any, confirmed: Deferred[Any]) -> None:
        self.wrapped = wrapped
        self.confirmed = confirmed
        self._passing = False

    def dataReceived(self, data: bytes) -> None:
        if self._passing:
            self.wrapped.dataReceived(data)
            return
        if not data:
            return
        first, rest = data[:1], data[1:]
        if first != CONFIRMATION:
            transport: Any = self.transport
            transport.loseConnection()
            self._fail(
                AuthFailed("server verification (of our certificate or IP address) failed")
            )
            return
        self._passing = True
        self.wrapped.makeConnection(self.transport)
        d, self.confirmed = self.confirmed, Deferred()
        d.callback(self.wrapped)
        if rest:
            self.wrapped.dataReceived(rest)

    def _fail(self, error: Exception) -> None:
        d, self.confirmed = self.confirmed, Deferred()
        if not d.called:
            d.errback(error)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._passing:
            self.wrapped.connectionLost(reason)
        else:
            self._fail(
                AuthFailed(f"Unable to read TLS confirmation: {reason.getErrorMessage()}")
            )


class _ConfirmationFactory(Factory):
    """
    Wrap each protocol C{factory} builds in a L{_ConfirmationProtocol}.
    """

    def __init__(self, factory: Factory, confirmed: Deferred[Protocol]) -> None:
        self.factory = factory
        self.confirmed = confirmed

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        wrapped: Any = self.factory.buildProtocol(addr)
        if wrapped is None:
            return None
        return _ConfirmationProtocol(wrapped, self.confirmed)


@implementer(IStreamClientEndpoint)
class ConfirmedEndpoint:
    """
    An endpoint whose C{connect} fires only after the server's confirmation
    byte, with the protocol built by the caller's factory.

    @ivar inner: the endpoint that makes the (TLS) connection.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def connect(self, protocolFactory: Factory) -> Deferred[Protocol]:  # type: ignore[override]
        """
        @param protocolFactory: builds the RPC protocol.
        @return: fires with that protocol, connected and confirmed.
        """
        confirmed: Deferred[Protocol] = Deferred()
        connecting: Deferred[Any] = self.inner.connect(
            _ConfirmationFactory(protocolFactory, confirmed)
        )

        def connected(_: object) -> Deferred[Protocol]:
            return confirmed

        return connecting.addCallback(connected)


def endpoint_for(uri: ParsedURI, reactor: Any) -> Any:
    """
    @param uri: where to connect.
    @param reactor: the reactor to connect with.
    @return: an endpoint for C{uri}'s transport; for TLS one that waits for
        the confirmation byte.
    @raise NoSupport: for TLS when the TLS helper is missing.
    """
    if uri.transport == "unix":
        assert uri.socket is not None
        return UNIXClientEndpoint(reactor, uri.socket)  # type: ignore[no-untyped-call]
    assert uri.host is not None and uri.port is not None
    tcp: Any = HostnameEndpoint(reactor, uri.host, uri.port)
    if uri.transport == "tcp":
        return tcp
    options = client_tls_options(uri.host, uri.pkipath, uri.no_verify)
    return ConfirmedEndpoint(wrapClientTLS(options, tcp))

# -*- test-case-name: tests.daemon.test_tls,tests.integration.test_tls_handshake -*-
"""
TLS for the daemon's C{qemu+tls://} listener, as libvirtd does it.

 1. At start-up L{load_tls_settings} reads and checks our own certificate,
    key, CA and optional CRL (libvirt's layout, or C{--pki-dir}); any problem
    is a L{TLSConfigError} naming the file.
 2. L{tls_server_factory} wraps the RPC server factory in
    L{TLSMemoryBIOFactory}: TLS 1.2, the client certificate requested and
    verified by OpenSSL against the CA, with expiry and CRL.  As in
    libvirtd, a bad or missing certificate does not fail the handshake:
    the verify callback only records OpenSSL's verdict.
 3. After the handshake, the libvirt confirmation step (libvirt-rpc.md
    S{sect}5.2): the client must have sent a certificate that verified, its
    usages are checked and its DN is matched against the C{allowed_dn}
    globs; an accepted client gets the single byte C{0x01} inside TLS and
    only then meets the inner protocol, a refused one is logged (address,
    DN, reason) and its TCP connection closed without a TLS alert, so that
    virsh reports "Unable to read TLS confirmation" as with libvirtd.  A
    client that does not complete the handshake within C{handshake_timeout}
    seconds is dropped.

L{client_tls_options} is the client side, for qemud's own client.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from qemud.tlsfiles import (
    PrivateKey,
    TLSConfigError,
    TLSFiles,
    check_key_matches,
    check_usage,
    check_validity,
    client_files,
    dn_allowed,
    find_issuer,
    is_revoked,
    load_certificate,
    load_certificates,
    load_crl,
    load_private_key,
    render_dn,
    server_files,
)

__all__ = [
    "CONFIRMATION_BYTE",
    "TLSConfigError",
    "TLSSettings",
    "VerifyFailure",
    "client_tls_options",
    "listen_tls",
    "load_tls_settings",
    "render_dn",
    "tls_server_factory",
]

#: What the server sends, inside TLS, once it has accepted the client.
CONFIRMATION_BYTE = b"\x01"

_log = Logger()

# OpenSSL's X509_V_ERR_* codes: OpenSSL's own text, and what it means for
# the client certificate (libvirt-rpc.md S{sect}5.2), for the log.
_VERIFY_ERRORS: dict[int, tuple[str, str]] = {
    2: ("unable to get issuer certificate", "is not signed by the trusted CA"),
    3: ("unable to get certificate CRL", "cannot be checked: no revocation list for its issuer"),
    4: ("unable to decrypt certificate's signature", "has an invalid signature"),
    6: ("unable to decode issuer public key", "is not signed by the trusted CA"),
    7: ("certificate signature failure", "has an invalid signature"),
    8: ("CRL signature failure", "cannot be checked: the revocation list's signature is invalid"),
    9: ("certificate is not yet valid", "is not yet valid"),
    10: ("certificate has expired", "has expired"),
    11: ("CRL is not yet valid", "cannot be checked: the revocation list is not yet valid"),
    12: ("CRL has expired", "cannot be checked: the revocation list has expired"),
    13: ("format error in certificate's notBefore field", "is malformed"),
    14: ("format error in certificate's notAfter field", "is malformed"),
    18: ("self-signed certificate", "is self-signed, not signed by the trusted CA"),
    19: ("self-signed certificate in certificate chain", "is not signed by the trusted CA"),
    20: ("unable to get local issuer certificate", "is not signed by the trusted CA"),
    21: ("unable to verify the first certificate", "is not signed by the trusted CA"),
    22: ("certificate chain too long", "has too long a chain"),
    23: ("certificate revoked", "revoked"),
    24: ("invalid CA certificate", "is not signed by a valid CA certificate"),
    25: ("path length constraint exceeded", "violates its CA's path length constraint"),
    26: ("unsupported certificate purpose", "is not for use by a TLS client"),
    28: ("certificate rejected", "is rejected by the trust settings"),
}
_X509_V_ERR_INVALID_PURPOSE = 26


def _openssl_verify_text(errno: int) -> str:
    """
    @return: OpenSSL's own text for an X509_V_ERR_* code, from the table or
        (for a rare code) from C{X509_verify_cert_error_string}.
    """
    known = _VERIFY_ERRORS.get(errno)
    if known is not None:
        return known[0]
    try:
        from OpenSSL._util import ffi, lib

        text = ffi.string(lib.X509_verify_cert_error_string(errno)).decode("ascii", "replace")
    except (ImportError, AttributeError):  # pragma: no cover - private pyOpenSSL API
        text = ""
    return f"{text} (X509 verify error {errno})" if text else f"X509 verify error {errno}"


@dataclass(frozen=True)
class VerifyFailure:
    """
    One objection OpenSSL raised against the client's certificate chain.

    @ivar errno: the X509_V_ERR_* code.
    @ivar depth: where in the chain: 0 is the client certificate itself, 1
        its issuer, and so on.
    @ivar subject: the DN (L{render_dn}) of the certificate at C{depth}.
    """

    errno: int
    depth: int
    subject: str

    def describe(self) -> str:
        """
        @return: a sentence for the log: what is wrong with the client
            certificate, with OpenSSL's text in brackets when it says
            something else, and the chain position unless it is the client
            certificate itself; e.g. C{client certificate revoked} or
            C{client certificate is not signed by the trusted CA (unable to
            get local issuer certificate)}.
        """
        openssl = _openssl_verify_text(self.errno)
        if self.depth > 0:
            return f"client certificate chain: {openssl} at depth {self.depth} ({self.subject!r})"
        known = _VERIFY_ERRORS.get(self.errno)
        meaning = known[1] if known is not None else "failed verification"
        text = f"client certificate {meaning}"
        return text if openssl.endswith(meaning) else f"{text} ({openssl})"


@dataclass(frozen=True)
class TLSSettings:
    """
    The server's checked TLS material.

    @ivar files: where it was read from.
    @ivar ca_certs: the trusted CA certificate(s) (C{cacert.pem}).
    @ivar cert: the server certificate.
    @ivar key: its private key.
    @ivar crl: the CA's revocation list, if C{cacrl.pem} exists.
    @ivar warnings: non-fatal findings of the start-up check (e.g. a
        non-critical extension that does not allow the usage), to be logged.
    """

    files: TLSFiles
    ca_certs: tuple[x509.Certificate, ...]
    cert: x509.Certificate
    key: PrivateKey
    crl: x509.CertificateRevocationList | None
    warnings: tuple[str, ...] = ()


def load_tls_settings(
    pki_dir: str | None,
    session: bool,
    *,
    home: str | None = None,
    now: datetime.datetime | None = None,
) -> TLSSettings:
    """
    Read the server's TLS files and check them as libvirtd does at start-up:
    readable and parseable, the key matches the certificate, neither the
    certificate nor the CA is expired or not yet valid, the CA signed the
    certificate, the certificate's usages allow a TLS server, and the CRL
    (if any) parses, is signed by the CA and does not revoke our own
    certificate.

    @param pki_dir: the C{--pki-dir} (C{cacert.pem}, C{servercert.pem},
        C{serverkey.pem}, optional C{cacrl.pem}), or C{None} for libvirt's
        default locations.
    @param session: use C{~/.pki/libvirt/} rather than C{/etc/pki/} when
        C{pki_dir} is C{None}.
    @param home: the home directory for session mode (default: C{~}).
    @param now: the time to check validity against (default: now).
    @return: the loaded settings.
    @raise TLSConfigError: naming the offending file and the problem.
    """
    files = server_files(pki_dir, session, home=home)
    cas = load_certificates(files.cacert, "CA certificate")
    cert = load_certificate(files.cert, "server certificate")
    key = load_private_key(files.key, "server key")
    check_key_matches(cert, key, files.cert, files.key)
    warnings: list[str] = []
    for ca in cas:
        check_validity(ca, files.cacert, "CA certificate", now)
        errors, warns = check_usage(ca, "ca", files.cacert)
        if errors:
            raise TLSConfigError(errors[0])
        warnings.extend(warns)
    check_validity(cert, files.cert, "server certificate", now)
    errors, warns = check_usage(cert, "server", files.cert)
    if errors:
        raise TLSConfigError(errors[0])
    warnings.extend(warns)
    issuer = find_issuer(cert, cas)
    if issuer is None:
        raise TLSConfigError(
            f"The server certificate '{files.cert}' is not signed by the CA "
            f"certificate in '{files.cacert}'"
        )
    crl = None
    try:
        with open(files.crl, "rb"):
            pass
    except FileNotFoundError:
        pass
    else:
        crl = load_crl(files.crl)
        crl_issuer = next((ca for ca in cas if ca.subject == crl.issuer), None)
        if crl_issuer is None or not crl.is_signature_valid(
            crl_issuer.public_key()  # type: ignore[arg-type]
        ):
            raise TLSConfigError(
                f"The revocation list '{files.crl}' is not signed by the CA in '{files.cacert}'"
            )
        if is_revoked(cert, crl):
            raise TLSConfigError(
                f"The server certificate '{files.cert}' has been revoked (in '{files.crl}')"
            )
    return TLSSettings(
        files=files,
        ca_certs=tuple(cas),
        cert=cert,
        key=key,
        crl=crl,
        warnings=tuple(warnings),
    )


class _ClientConnection(SSL.Connection):
    """
    A server-side TLS connection that keeps what the verify callback found
    out about the client's certificate chain, for the confirmation step.

    @ivar leaf_checked: whether OpenSSL ran the verification up to the
        client certificate itself (depth 0); without it nothing was
        verified, whatever certificate the connection reports.
    @ivar failures: every objection OpenSSL raised, in order.
    """

    def __init__(self, context: SSL.Context) -> None:
        super().__init__(context, None)
        self.leaf_checked = False
        self.failures: list[tuple[int, int, crypto.X509]] = []

    def verify_failures(self) -> list[VerifyFailure]:
        """
        @return: the objections, with the DN of each certificate rendered.
        """
        return [
            VerifyFailure(errno, depth, render_dn(cert.to_cryptography().subject))
            for errno, depth, cert in self.failures
        ]


def _verify_callback(
    conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
) -> bool:
    """
    Record OpenSSL's verdict on each certificate of the client's chain on
    the L{_ClientConnection}, and let the handshake go on whatever it is:
    like libvirtd, we refuse a bad certificate after the handshake, by not
    sending the confirmation byte (L{_ConfirmingProtocol.handshakeCompleted}),
    never with a TLS alert during it.  A purpose mismatch on the client
    certificate is not recorded: it is left to the libvirt-style usage check
    after the handshake, as OpenSSL rejects a non-critical extendedKeyUsage
    that libvirt only warns about.

    @return: C{True}, so that OpenSSL completes the handshake, except on a
        connection that cannot record the verdict (fail closed).
    """
    if not isinstance(conn, _ClientConnection):
        return bool(ok)
    if depth == 0:
        conn.leaf_checked = True
    if not ok and not (errno == _X509_V_ERR_INVALID_PURPOSE and depth == 0):
        conn.failures.append((errno, depth, cert))
    return True


@implementer(IOpenSSLServerConnectionCreator)
class _ServerConnectionCreator:
    """
    Makes one L{_ClientConnection} per client from a shared context: TLS
    1.2, our certificate and key, the CA (and CRL) in the verify store, the
    client certificate requested and verified but not required.
    """

    def __init__(self, settings: TLSSettings) -> None:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        # TLS 1.2 only.  Under TLS 1.3 OpenSSL sends session tickets right
        # after the handshake, and pyOpenSSL cannot turn them off
        # (SSL_CTX_set_num_tickets is not bound).  libvirt's client reads the
        # confirmation byte with a single gnutls_record_recv after poll(); a
        # ticket there makes it return EAGAIN and virsh fails with "Unable
        # to read TLS confirmation: Resource temporarily unavailable".
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        # No renegotiation: the client certificate is judged once, after the
        # first handshake, and the verify callback accepts everything.
        ctx.set_options(
            SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION
        )
        ctx.use_certificate(settings.cert)
        ctx.use_privatekey(settings.key)
        ctx.check_privatekey()
        store = ctx.get_cert_store()
        assert store is not None
        for ca in settings.ca_certs:
            store.add_cert(crypto.X509.from_cryptography(ca))
        if settings.crl is not None:
            store.add_crl(settings.crl)
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
        # Request a certificate, but without VERIFY_FAIL_IF_NO_PEER_CERT:
        # a client without one is refused (or let in read-only) after the
        # handshake, as libvirtd does.
        ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
        # Client-certificate verification needs a session id context.
        ctx.set_session_id(b"qemud-tls")
        # No resumption either: a resumed session would skip verification.
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
        self._context = ctx

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        @return: a new server-side connection.
        """
        return _ClientConnection(self._context)


@implementer(IHandshakeListener)
class _ConfirmingProtocol(Protocol):
    """
    Sits inside TLS until the handshake is done, runs libvirt's confirmation
    step, then passes everything to the inner protocol.
    """

    log = Logger()

    def __init__(self, factory: _ConfirmingFactory, addr: IAddress | None) -> None:
        self._factory = factory
        self._addr = addr
        # zope interfaces are opaque to mypy without its zope plugin: Any.
        self._timer: Any = None
        self._inner: Any = None
        self._pending: list[bytes] = []
        self._refused: str | None = None
        self._dn = ""

    def _peer(self) -> str:
        addr = self._addr
        host = getattr(addr, "host", None)
        port = getattr(addr, "port", None)
        return f"{host}:{port}" if host is not None else str(addr)

    def connectionMade(self) -> None:
        """Arm the handshake timer."""
        self._timer = self._factory.reactor.callLater(
            self._factory.handshake_timeout, self._handshakeTimedOut
        )

    def _handshakeTimedOut(self) -> None:
        self._timer = None
        self._refused = "TLS handshake timed out"
        self.log.warn(
            "TLS client {peer} dropped: handshake not completed within {timeout} s",
            peer=self._peer(),
            timeout=self._factory.handshake_timeout,
        )
        transport: Any = self.transport
        transport.abortConnection()

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def handshakeCompleted(self) -> None:
        """
        Judge the client certificate as libvirtd does: present (unless
        anonymous read-only access is allowed), verified by OpenSSL against
        the CA and CRL and in its validity period, usages allowing a TLS
        client, DN on the allow-list.  Send C{0x01} and connect the inner
        protocol, or log why and disconnect.
        """
        self._cancelTimer()
        factory = self._factory
        transport: Any = self.transport
        conn = transport.getHandle()
        peer_cert = conn.get_peer_certificate(as_cryptography=True)
        readonly = False
        reason: str | None = None
        if peer_cert is None:
            if factory.anonymous_readonly:
                readonly = True
            else:
                reason = "no client certificate"
        else:
            self._dn = render_dn(peer_cert.subject)
            reason = self._verification_failure(conn)
            if reason is None:
                errors, warnings = check_usage(peer_cert, "client", f"of client {self._peer()}")
                for warning in warnings:
                    self.log.warn(
                        "TLS client {peer}: {warning}", peer=self._peer(), warning=warning
                    )
                if errors:
                    reason = errors[0]
                elif factory.allowed_dn and not dn_allowed(self._dn, factory.allowed_dn):
                    reason = "Client's Distinguished Name is not on the list of allowed clients"
        if reason is not None:
            self._refuse(reason)
            return
        inner_factory: Any = factory.inner_factory
        inner = inner_factory.buildProtocol(self._addr)
        if inner is None:
            self._refuse("the server refused the connection")
            return
        if readonly:
            inner.readonly = True
        self.log.info(
            "TLS client {peer} accepted (DN {dn!r}{ro})",
            peer=self._peer(),
            dn=self._dn,
            ro=", anonymous read-only" if readonly else "",
        )
        transport.write(CONFIRMATION_BYTE)
        self._inner = inner
        inner.makeConnection(transport)
        pending, self._pending = self._pending, []
        for data in pending:
            inner.dataReceived(data)

    @staticmethod
    def _verification_failure(conn: SSL.Connection) -> str | None:
        """
        @param conn: the connection of a client that sent a certificate.
        @return: why OpenSSL's verification of it failed (its first
            objection: later ones tend to be consequences, such as a missing
            CRL for an unknown issuer), or did not reach the client
            certificate at all; C{None} if it ran and found nothing wrong.
        """
        if not isinstance(conn, _ClientConnection):
            return "client certificate was not verified"
        failures = conn.verify_failures()
        if failures:
            return failures[0].describe()
        if not conn.leaf_checked:
            return "client certificate was not verified"
        return None

    def _refuse(self, reason: str) -> None:
        self._refused = reason
        self.log.warn(
            "TLS client {peer} refused: {reason} (DN {dn!r})",
            peer=self._peer(),
            reason=reason,
            dn=self._dn,
        )
        # Like libvirtd: close the TCP connection without a TLS close_notify,
        # so virsh reports "Unable to read TLS confirmation" (after a clean
        # TLS close it would blame its own certificate or the IP address).
        # On the next turn of the reactor, so that our last handshake
        # message, still in the TLS layer's buffer now, goes out first.
        tls: Any = self.transport
        self._factory.reactor.callLater(0, tls.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        """Pass data to the inner protocol; nothing else may talk before it."""
        if self._inner is not None:
            self._inner.dataReceived(data)
        elif self._refused is None:
            self._pending.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Cancel the timer; tell the inner protocol, or log a failed handshake."""
        self._cancelTimer()
        if self._inner is not None:
            self._inner.connectionLost(reason)
            self._inner = None
            return
        if self._refused is None:
            self.log.warn(
                "TLS client {peer} refused: handshake failed: {why}",
                peer=self._peer(),
                why=_describe_failure(reason),
            )


def _describe_failure(reason: Failure) -> str:
    """
    @return: why a connection ended, as text: for a TLS error the reasons
        OpenSSL gives (C{wrong version number}, ...) rather than the raw list
        of C{(library, function, reason)} tuples.
    """
    error = reason.value
    if isinstance(error, SSL.Error) and error.args:
        details = error.args[0]
        if isinstance(details, list):
            texts = [
                str(item[-1]) for item in details if isinstance(item, tuple) and item and item[-1]
            ]
            if texts:
                return "TLS error: " + "; ".join(texts)
        if isinstance(error, SSL.SysCallError) and len(error.args) == 2:
            return f"TLS error: {error.args[1]}"
    return reason.getErrorMessage()


class _ConfirmingFactory(Factory):
    """
    Builds a L{_ConfirmingProtocol} per connection.

    @ivar inner_factory: builds the protocol that runs once confirmed.
    """

    noisy = False

    def __init__(
        self,
        inner_factory: IProtocolFactory,
        reactor: IReactorTime,
        allowed_dn: Sequence[str],
        anonymous_readonly: bool,
        handshake_timeout: float,
    ) -> None:
        self.inner_factory: Any = inner_factory
        self.reactor: Any = reactor
        self.allowed_dn = tuple(allowed_dn)
        self.anonymous_readonly = anonymous_readonly
        self.handshake_timeout = handshake_timeout

    def buildProtocol(self, addr: IAddress | None) -> _ConfirmingProtocol:
        """@return: a protocol awaiting the TLS handshake."""
        return _ConfirmingProtocol(self, addr)

    def doStart(self) -> None:
        """Start the inner factory too."""
        super().doStart()  # type: ignore[no-untyped-call]
        self.inner_factory.doStart()

    def doStop(self) -> None:
        """Stop the inner factory too."""
        self.inner_factory.doStop()
        super().doStop()  # type: ignore[no-untyped-call]


def tls_server_factory(
    inner_factory: IProtocolFactory,
    settings: TLSSettings,
    reactor: IReactorTime,
    *,
    allowed_dn: Sequence[str] = (),
    anonymous_readonly: bool = False,
    handshake_timeout: float = 10.0,
) -> IProtocolFactory:
    """
    Wrap a protocol factory in libvirt-style mutual TLS.

    @param inner_factory: builds the protocol (e.g. the RPC server) for a
        confirmed client; its protocols have a settable C{readonly}.
    @param settings: from L{load_tls_settings}.
    @param reactor: the clock for the handshake timeout (and write batching).
    @param allowed_dn: globs a client DN must match (libvirt's
        C{tls_allowed_dn_list}); empty allows every verified client.
    @param anonymous_readonly: let clients without a certificate in, with
        the inner protocol's C{readonly} set; a client that sends a
        certificate must still pass every check.
    @param handshake_timeout: seconds a client has to finish the handshake.
    @return: a factory for L{listen_tls} (or any stream endpoint).
    """
    for warning in settings.warnings:
        _log.warn("TLS set-up: {warning}", warning=warning)
    creator = _ServerConnectionCreator(settings)
    confirming = _ConfirmingFactory(
        inner_factory, reactor, allowed_dn, anonymous_readonly, handshake_timeout
    )
    factory: Any = TLSMemoryBIOFactory(
        creator,
        False,
        confirming,
        clock=reactor,
    )
    return factory  # type: ignore[no-any-return]


def listen_tls(
    reactor: IReactorTCP, host: str, port: int, factory: IProtocolFactory
) -> Deferred[IListeningPort]:
    """
    Listen on an IPv4 or IPv6 (C{::1}, any address with a colon) address.

    @param port: the TCP port; 0 picks a free one.
    @return: fires with the listening port.
    """
    endpoint: Any
    if ":" in host:
        endpoint = TCP6ServerEndpoint(reactor, port, interface=host)  # type: ignore[no-untyped-call]
    else:
        endpoint = TCP4ServerEndpoint(reactor, port, interface=host)  # type: ignore[no-untyped-call]
    listening: Deferred[IListeningPort] = endpoint.listen(factory)
    return listening


def _private_certificate(cert_path: str, key_path: str) -> ssl.PrivateCertificate:
    cert = load_certificate(cert_path, "client certificate")
    key = load_private_key(key_path, "client key")
    check_key_matches(cert, key, cert_path, key_path)
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loaded: ssl.PrivateCertificate = ssl.PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]
    return loaded


def client_tls_options(
    hostname: str,
    pki_dir: str | None,
    no_verify: bool = False,
    *,
    home: str | None = None,
    is_root: bool | None = None,
) -> IOpenSSLClientConnectionCreator | ssl.CertificateOptions:
    """
    TLS options for connecting to a qemud or libvirtd, with our client
    certificate from libvirt's client locations (see
    L{qemud.tlsfiles.client_files}).

    @param hostname: the host from the URI; the server certificate must
        match it (service_identity) unless C{no_verify}.
    @param pki_dir: the C{pkipath=} URI parameter, or C{None}.
    @param no_verify: like libvirt's C{no_verify=1}, do not check the server
        certificate at all.
    @return: connection options for C{wrapClientTLS}/C{connectSSL}.
    @raise TLSConfigError: a client file is missing or unusable.
    """
    files = client_files(pki_dir, home=home, is_root=is_root)
    client_cert = _private_certificate(files.cert, files.key)
    if no_verify:
        return ssl.CertificateOptions(
            privateKey=client_cert.privateKey.original,
            certificate=client_cert.original,
            verify=False,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
    cas = load_certificates(files.cacert, "CA certificate")
    trust: Any = ssl.trustRootFromCertificates(  # type: ignore[no-untyped-call]
        [ssl.Certificate.loadPEM(ca.public_bytes(serialization.Encoding.PEM)) for ca in cas]
    )
    return ssl.optionsForClientTLS(
        hostname,
        trustRoot=trust,
        clientCertificate=client_cert,
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
    )

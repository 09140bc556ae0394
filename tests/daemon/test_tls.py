"""
Tests for L{qemud.daemon.tls} and L{qemud.tlsfiles}: start-up checks of the
server's TLS files, DN rendering and matching, libvirt's usage rules, and
the confirmation step driven in memory (real TLS over L{iosim}, a Clock).
"""

from __future__ import annotations

import datetime
import os
import shutil
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from qemud.daemon import tls as tls_module
from qemud.daemon.tls import (
    CONFIRMATION_BYTE,
    TLSConfigError,
    VerifyFailure,
    client_tls_options,
    load_tls_settings,
    tls_server_factory,
)
from qemud.errors import QemudError
from qemud.pki import make_ca, make_server_cert
from qemud.tlsfiles import check_usage, client_files, dn_allowed, render_dn, server_files
from tests.integration.pki import CLIENT_DN, OTHER_DN, TestPKI, shared_test_pki


def _copy_server_dir(test: SynchronousTestCase, pki: TestPKI) -> str:
    target = test.mktemp()
    shutil.copytree(pki.server_dir, target)
    return target


class TLSSettingsTests(SynchronousTestCase):
    """
    L{load_tls_settings} loads good files and names the bad one.
    """

    def setUp(self) -> None:
        self.pki = shared_test_pki()
        self.dir = _copy_server_dir(self, self.pki)

    def assertConfigError(self, *fragments: str) -> TLSConfigError:
        with self.assertRaises(TLSConfigError) as cm:
            load_tls_settings(self.dir, session=False)
        for fragment in fragments:
            self.assertIn(fragment, str(cm.exception))
        self.assertIsInstance(cm.exception, QemudError)
        return cm.exception

    def test_good(self) -> None:
        """
        A complete directory loads: the CA, the certificate for localhost,
        the matching key and the CRL, with no warnings.
        """
        settings = load_tls_settings(self.dir, session=False)
        self.assertEqual(len(settings.ca_certs), 1)
        self.assertEqual(
            settings.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            "localhost",
        )
        self.assertIsNotNone(settings.crl)
        self.assertEqual(settings.warnings, ())
        self.assertEqual(settings.files.key, os.path.join(self.dir, "serverkey.pem"))

    def test_crl_optional(self) -> None:
        """
        Without C{cacrl.pem} the settings load with no CRL.
        """
        os.unlink(os.path.join(self.dir, "cacrl.pem"))
        self.assertIsNone(load_tls_settings(self.dir, session=False).crl)

    def test_missing(self) -> None:
        """
        A missing file is named, with the OS's reason.
        """
        for name in ("cacert.pem", "servercert.pem", "serverkey.pem"):
            path = os.path.join(self.dir, name)
            saved = path + ".saved"
            os.rename(path, saved)
            self.assertConfigError(path, "No such file or directory")
            os.rename(saved, path)

    def test_unreadable(self) -> None:
        """
        A path that cannot be read (a directory in place of the key; root
        ignores file modes) is named, with the OS's reason.
        """
        path = os.path.join(self.dir, "serverkey.pem")
        os.unlink(path)
        os.mkdir(path)
        self.assertConfigError("Cannot read server key", path, "Is a directory")

    def test_garbage_certificate(self) -> None:
        """
        A certificate file that is not PEM is named as unparseable.
        """
        path = os.path.join(self.dir, "servercert.pem")
        with open(path, "w") as f:
            f.write("not a certificate\n")
        self.assertConfigError("Unable to parse server certificate", path)

    def test_key_mismatch(self) -> None:
        """
        A key that belongs to another certificate is refused, naming both.
        """
        shutil.copyfile(
            os.path.join(self.pki.bad_name_server_dir, "serverkey.pem"),
            os.path.join(self.dir, "serverkey.pem"),
        )
        self.assertConfigError(
            "does not match", os.path.join(self.dir, "serverkey.pem"), "servercert.pem"
        )

    def test_expired_server_cert(self) -> None:
        """
        An expired server certificate is refused as expired.
        """
        for name in ("servercert.pem", "serverkey.pem"):
            os.unlink(os.path.join(self.dir, name))
        make_server_cert(self.dir, self.pki.ca_dir, ["localhost"], days=-1, force=True)
        self.assertConfigError("has expired", os.path.join(self.dir, "servercert.pem"))

    def test_not_yet_valid(self) -> None:
        """
        Checked against a time before the certificate starts, the server
        certificate (or the CA) is reported as not yet active.
        """
        past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
        with self.assertRaises(TLSConfigError) as cm:
            load_tls_settings(self.dir, session=False, now=past)
        self.assertIn("is not yet active", str(cm.exception))

    def test_other_ca(self) -> None:
        """
        A server certificate signed by another CA than C{cacert.pem} is refused.
        """
        shutil.copyfile(
            os.path.join(self.pki.other_ca_dir, "cacert.pem"), os.path.join(self.dir, "cacert.pem")
        )
        os.unlink(os.path.join(self.dir, "cacrl.pem"))
        self.assertConfigError("is not signed by the CA", os.path.join(self.dir, "cacert.pem"))

    def test_garbage_crl(self) -> None:
        """
        A CRL that does not parse is named.
        """
        path = os.path.join(self.dir, "cacrl.pem")
        with open(path, "w") as f:
            f.write("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
        self.assertConfigError("Unable to parse CA revocation list", path)

    def test_crl_of_other_ca(self) -> None:
        """
        A CRL signed by another CA is refused.
        """
        other = self.mktemp()
        make_ca(other, cn="qemud test CA")  # same name, different key
        from qemud.pki import revoke

        crl = revoke(other, os.path.join(other, "cacert.pem"))
        shutil.copyfile(crl, os.path.join(self.dir, "cacrl.pem"))
        self.assertConfigError("not signed by the CA", os.path.join(self.dir, "cacrl.pem"))

    def test_default_locations(self) -> None:
        """
        Without a directory, the system daemon uses C{/etc/pki/...} and a
        session daemon C{~/.pki/libvirt/}; clients likewise.
        """
        system = server_files(None, session=False)
        self.assertEqual(system.cacert, "/etc/pki/CA/cacert.pem")
        self.assertEqual(system.cert, "/etc/pki/libvirt/servercert.pem")
        self.assertEqual(system.key, "/etc/pki/libvirt/private/serverkey.pem")
        self.assertEqual(system.crl, "/etc/pki/CA/cacrl.pem")
        session = server_files(None, session=True, home="/home/u")
        self.assertEqual(session.key, "/home/u/.pki/libvirt/serverkey.pem")
        self.assertEqual(
            client_files(None, is_root=True).key, "/etc/pki/libvirt/private/clientkey.pem"
        )
        home = self.mktemp()
        os.makedirs(os.path.join(home, ".pki", "libvirt"))
        open(os.path.join(home, ".pki", "libvirt", "clientcert.pem"), "w").close()
        user = client_files(None, home=home, is_root=False)
        self.assertEqual(user.cert, os.path.join(home, ".pki", "libvirt", "clientcert.pem"))
        self.assertEqual(user.cacert, "/etc/pki/CA/cacert.pem")
        self.assertEqual(client_files("/p").key, "/p/clientkey.pem")

    def test_session_home(self) -> None:
        """
        A session daemon with no C{--pki-dir} reads C{<home>/.pki/libvirt/}.
        """
        home = self.mktemp()
        shutil.copytree(self.dir, os.path.join(home, ".pki", "libvirt"))
        settings = load_tls_settings(None, session=True, home=home)
        self.assertEqual(
            settings.files.cert, os.path.join(home, ".pki", "libvirt", "servercert.pem")
        )


def _name(*pairs: tuple[Any, str]) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(o, v)]) for o, v in pairs])


class DNTests(SynchronousTestCase):
    """
    L{render_dn} renders like GnuTLS; L{dn_allowed} matches globs.
    """

    def test_certificate_order(self) -> None:
        """
        RDNs come out in certificate order, as in the trace: a subject made
        as /O=Research/CN=client1 is C{O=Research,CN=client1}.
        """
        name = _name((NameOID.ORGANIZATION_NAME, "Research"), (NameOID.COMMON_NAME, "client1"))
        self.assertEqual(render_dn(name), "O=Research,CN=client1")
        self.assertEqual(render_dn(shared_test_pki_cert_subject()), CLIENT_DN)

    def test_short_names(self) -> None:
        """
        GnuTLS's short names are used; unknown attributes are dotted OIDs.
        """
        name = _name(
            (NameOID.COUNTRY_NAME, "GB"),
            (NameOID.STATE_OR_PROVINCE_NAME, "London"),
            (NameOID.LOCALITY_NAME, "London"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Lab"),
            (NameOID.DOMAIN_COMPONENT, "example"),
            (NameOID.EMAIL_ADDRESS, "a@example.org"),
            (x509.ObjectIdentifier("1.2.3.4"), "x"),
        )
        self.assertEqual(
            render_dn(name),
            "C=GB,ST=London,L=London,OU=Lab,DC=example,EMAIL=a@example.org,1.2.3.4=x",
        )

    def test_escaping_and_multivalued(self) -> None:
        """
        Special characters are backslash-escaped; a multi-valued RDN is
        joined with C{+}.
        """
        name = x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "A, B+C"),
                        x509.NameAttribute(NameOID.COMMON_NAME, " lead"),
                    ]
                )
            ]
        )
        self.assertEqual(render_dn(name), "O=A\\, B\\+C+CN=\\ lead")

    def test_globs(self) -> None:
        """
        Globs match the whole DN, case-sensitively; the reversed order from
        the trace does not match.
        """
        dn = "O=Research,CN=client1"
        self.assertTrue(dn_allowed(dn, ["O=Research,CN=client1"]))
        self.assertTrue(dn_allowed(dn, ["nothing", "O=Research,CN=*"]))
        self.assertTrue(dn_allowed(dn, ["*CN=client?"]))
        self.assertFalse(dn_allowed(dn, ["CN=client1,O=Research"]))
        self.assertFalse(dn_allowed(dn, ["O=Research"]))
        self.assertFalse(dn_allowed(dn, ["o=research,cn=client1"]))
        self.assertFalse(dn_allowed(dn, []))


def shared_test_pki_cert_subject() -> x509.Name:
    pki = shared_test_pki()
    with open(os.path.join(pki.client_dir, "clientcert.pem"), "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).subject


def _self_signed(
    eku: list[x509.ObjectIdentifier], critical: bool, ca: bool = False
) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name((NameOID.COMMON_NAME, "t"))
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=critical)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=critical)
        .sign(key, hashes.SHA256())
    )


class UsageTests(SynchronousTestCase):
    """
    L{check_usage} follows libvirt: fatal only for critical extensions.
    """

    def test_good_client(self) -> None:
        """
        The tool's client certificate is fit for a client, not for a server.
        """
        with open(os.path.join(shared_test_pki().client_dir, "clientcert.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(check_usage(cert, "client", "c"), ([], []))
        errors, warnings = check_usage(cert, "server", "c")
        self.assertEqual(errors, [])
        self.assertEqual(len(warnings), 1)  # the EKU is not critical

    def test_critical_purpose(self) -> None:
        """
        A critical extendedKeyUsage without clientAuth, or a critical CA
        basicConstraints, is an error for a client.
        """
        cert = _self_signed([ExtendedKeyUsageOID.SERVER_AUTH], critical=True, ca=True)
        errors, warnings = check_usage(cert, "client", "c")
        self.assertEqual(len(errors), 2)
        self.assertIn("basic constraints show a CA", errors[0])
        self.assertIn("purpose", errors[1])

    def test_non_critical_purpose(self) -> None:
        """
        The same mismatches in non-critical extensions are only warnings.
        """
        cert = _self_signed([ExtendedKeyUsageOID.SERVER_AUTH], critical=False, ca=True)
        errors, warnings = check_usage(cert, "client", "c")
        self.assertEqual(errors, [])
        self.assertEqual(len(warnings), 2)


class _Inner(Protocol):
    """An inner protocol that records what it sees and echoes."""

    readonly = False

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        assert self.transport is not None
        self.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost = reason


@implementer(IHandshakeListener)
class _Client(Protocol):
    """
    A client that records what the server sends, and whether its TLS
    handshake completed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None
        self.handshake_done = False

    def handshakeCompleted(self) -> None:
        self.handshake_done = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost = reason


class ConfirmationTests(SynchronousTestCase):
    """
    The confirmation step over real TLS in memory.
    """

    def setUp(self) -> None:
        self.pki = shared_test_pki()
        self.settings = load_tls_settings(self.pki.server_dir, session=False)
        self.clock = MemoryReactorClock()
        self.inners: list[_Inner] = []
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def _inner_factory(self) -> Factory:
        def build() -> _Inner:
            inner = _Inner()
            self.inners.append(inner)
            return inner

        return Factory.forProtocol(build)  # type: ignore[arg-type]

    def connect(self, client_dir: str | None, **kwargs: Any) -> tuple[iosim.IOPump, _Client, Any]:
        server_factory = tls_server_factory(
            self._inner_factory(), self.settings, self.clock, **kwargs
        )
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        server = server_factory.buildProtocol(addr)
        client = _Client()
        if client_dir is None:
            from twisted.internet import ssl

            options: Any = ssl.CertificateOptions(verify=False)
        else:
            options = client_tls_options("localhost", client_dir)
        client_tls = TLSMemoryBIOFactory(
            options, True, Factory.forProtocol(lambda: client), clock=self.clock
        ).buildProtocol(addr)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client_tls,
            iosim.FakeTransport(client_tls, isServer=False),
            greet=False,
            clock=self.clock,
        )
        pump.flush()
        return pump, client, server

    def refusals(self) -> list[dict[str, Any]]:
        """@return: the log events of refused clients."""
        return [e for e in self.events if " refused: " in e.get("log_format", "")]

    def assertRefused(self, client_dir: str | None, reason: str, dn: str, **kwargs: Any) -> str:
        """
        Connect with C{client_dir}'s certificate (C{None}: none) and check
        the client is refused the way libvirtd refuses it: the TLS handshake
        completes, then the TCP connection closes without the confirmation
        byte and without a TLS close_notify (so the client sees a non-clean
        C{ConnectionLost}); no inner protocol is built; exactly one refusal
        is logged, with the client's address, C{dn} and a reason that starts
        with C{reason}, in words rather than OpenSSL's error tuples.

        @return: the logged reason.
        """
        _, client, _ = self.connect(client_dir, **kwargs)
        self.assertTrue(client.handshake_done)
        self.assertEqual(client.received, b"")
        self.assertEqual(self.inners, [])
        assert client.lost is not None
        self.assertIsInstance(client.lost.value, ConnectionLost)
        refusals = self.refusals()
        self.assertEqual(len(refusals), 1, refusals)
        self.assertEqual(refusals[0]["peer"], "127.0.0.1:40000")
        self.assertEqual(refusals[0]["dn"], dn)
        logged: str = refusals[0]["reason"]
        self.assertTrue(logged.startswith(reason), logged)
        for raw in ("[(", "SSL routines", "X509 verify error"):
            self.assertNotIn(raw, logged)
        return logged

    def test_accepted(self) -> None:
        """
        A good client gets exactly C{0x01} first, then talks to the inner
        protocol, which is not read-only; nothing is refused.
        """
        pump, client, server = self.connect(self.pki.client_dir)
        self.assertTrue(client.handshake_done)
        self.assertEqual(client.received, CONFIRMATION_BYTE)
        self.assertEqual(len(self.inners), 1)
        self.assertFalse(self.inners[0].readonly)
        assert client.transport is not None
        client.transport.write(b"hello")
        pump.flush()
        self.assertEqual(self.inners[0].received, b"hello")
        self.assertEqual(client.received, CONFIRMATION_BYTE + b"hello")
        self.assertIsNone(client.lost)
        self.assertEqual(self.refusals(), [])

    def test_dn_allowed(self) -> None:
        """
        A DN matching one of the globs is accepted.
        """
        _, client, _ = self.connect(self.pki.client_dir, allowed_dn=["x", "O=Research,CN=*"])
        self.assertEqual(client.received, CONFIRMATION_BYTE)

    def test_dn_refused(self) -> None:
        """
        A verified certificate whose DN is not on the list is refused after
        the handshake, the log naming the allow-list and the DN.
        """
        logged = self.assertRefused(
            self.pki.other_dn_client_dir,
            "Client's Distinguished Name is not on the list of allowed clients",
            OTHER_DN,
            allowed_dn=["O=Research,*"],
        )
        self.assertEqual(
            logged, "Client's Distinguished Name is not on the list of allowed clients"
        )

    def test_no_certificate(self) -> None:
        """
        A client without a certificate completes the handshake (the server
        requests one but does not require it) and is then refused, logged
        as "no client certificate" with an empty DN.
        """
        logged = self.assertRefused(None, "no client certificate", "")
        self.assertEqual(logged, "no client certificate")

    def test_revoked(self) -> None:
        """
        A certificate listed in the server's CRL is refused after the
        handshake as "client certificate revoked": the CRL is really checked.
        """
        logged = self.assertRefused(
            self.pki.revoked_client_dir, "client certificate revoked", CLIENT_DN
        )
        self.assertEqual(logged, "client certificate revoked")

    def test_other_ca(self) -> None:
        """
        A certificate from another CA (with the same DN) is refused after
        the handshake as not signed by the trusted CA, with OpenSSL's text:
        the chain is really verified.
        """
        logged = self.assertRefused(
            self.pki.other_ca_client_dir,
            "client certificate is not signed by the trusted CA",
            CLIENT_DN,
        )
        self.assertEqual(
            logged,
            "client certificate is not signed by the trusted CA "
            "(unable to get local issuer certificate)",
        )

    def test_expired(self) -> None:
        """
        An expired certificate is refused after the handshake as expired:
        the validity period is really checked.
        """
        logged = self.assertRefused(
            self.pki.expired_client_dir, "client certificate has expired", CLIENT_DN
        )
        self.assertEqual(logged, "client certificate has expired")

    def test_bad_certificate_checked_before_dn(self) -> None:
        """
        A revoked certificate whose DN is on the allow-list is still
        refused, for the revocation.
        """
        self.assertRefused(
            self.pki.revoked_client_dir,
            "client certificate revoked",
            CLIENT_DN,
            allowed_dn=[CLIENT_DN],
        )

    def test_unverified_certificate_refused(self) -> None:
        """
        Fail closed: if OpenSSL's verification never reaches the client
        certificate (here a verify callback that accepts without
        recording), a certificate, even a good one, is refused as not
        verified.
        """
        self.patch(tls_module, "_verify_callback", lambda conn, cert, errno, depth, ok: True)
        self.assertRefused(self.pki.client_dir, "client certificate was not verified", CLIENT_DN)

    def test_anonymous_readonly(self) -> None:
        """
        With C{anonymous_readonly}, a client without a certificate is let
        in, and the inner protocol is read-only; one with a certificate is not.
        """
        _, client, _ = self.connect(None, anonymous_readonly=True)
        self.assertEqual(client.received, CONFIRMATION_BYTE)
        self.assertTrue(self.inners[0].readonly)
        _, client, _ = self.connect(self.pki.client_dir, anonymous_readonly=True)
        self.assertEqual(client.received, CONFIRMATION_BYTE)
        self.assertFalse(self.inners[1].readonly)
        self.assertEqual(self.refusals(), [])

    def test_anonymous_readonly_bad_certificates(self) -> None:
        """
        C{anonymous_readonly} admits only clients without a certificate: a
        revoked, foreign or expired certificate is refused, not downgraded
        to read-only access.
        """
        cases = [
            (self.pki.revoked_client_dir, "client certificate revoked"),
            (self.pki.other_ca_client_dir, "client certificate is not signed by the trusted CA"),
            (self.pki.expired_client_dir, "client certificate has expired"),
        ]
        for client_dir, reason in cases:
            self.events.clear()
            self.assertRefused(client_dir, reason, CLIENT_DN, anonymous_readonly=True)

    def test_garbage_logged_in_words(self) -> None:
        """
        A client that sends something other than TLS fails the handshake;
        the log gives OpenSSL's reason as text, not its error tuples.
        """
        server_factory = tls_server_factory(self._inner_factory(), self.settings, self.clock)
        server = server_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40002))
        transport = iosim.FakeTransport(server, isServer=True)
        server.makeConnection(transport)
        server.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        server.connectionLost(Failure(ConnectionLost()))
        whys = [e["why"] for e in self.events if "handshake failed" in e.get("log_format", "")]
        self.assertEqual(len(whys), 1)
        self.assertTrue(whys[0].startswith("TLS error: "), whys[0])
        self.assertNotIn("[(", whys[0])
        self.assertEqual(self.inners, [])

    def test_handshake_timeout(self) -> None:
        """
        A client that sends nothing is dropped once the timeout passes on
        the injected clock, and not before.
        """
        server_factory = tls_server_factory(
            self._inner_factory(), self.settings, self.clock, handshake_timeout=5.0
        )
        server = server_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        transport = iosim.FakeTransport(server, isServer=True)
        server.makeConnection(transport)
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timer_cancelled(self) -> None:
        """
        A completed handshake cancels its timer: nothing is left scheduled
        and the client stays connected after the timeout has passed.
        """
        pump, client, _ = self.connect(self.pki.client_dir, handshake_timeout=5.0)
        self.clock.advance(10)
        pump.flush()
        self.assertIsNone(client.lost)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class VerifyFailureTests(SynchronousTestCase):
    """
    L{VerifyFailure.describe} turns OpenSSL's verify error codes into words.
    """

    def test_leaf(self) -> None:
        """
        For the client certificate itself the sentence says what is wrong,
        with OpenSSL's text in brackets when it says something else.
        """
        self.assertEqual(VerifyFailure(23, 0, CLIENT_DN).describe(), "client certificate revoked")
        self.assertEqual(
            VerifyFailure(10, 0, CLIENT_DN).describe(), "client certificate has expired"
        )
        self.assertEqual(
            VerifyFailure(9, 0, CLIENT_DN).describe(), "client certificate is not yet valid"
        )
        self.assertEqual(
            VerifyFailure(20, 0, CLIENT_DN).describe(),
            "client certificate is not signed by the trusted CA "
            "(unable to get local issuer certificate)",
        )
        self.assertEqual(
            VerifyFailure(12, 0, CLIENT_DN).describe(),
            "client certificate cannot be checked: the revocation list has expired "
            "(CRL has expired)",
        )

    def test_chain(self) -> None:
        """
        For a certificate higher up the chain, the sentence gives OpenSSL's
        text, the depth and that certificate's DN.
        """
        self.assertEqual(
            VerifyFailure(10, 1, "CN=qemud test CA").describe(),
            "client certificate chain: certificate has expired at depth 1 ('CN=qemud test CA')",
        )

    def test_unknown_code(self) -> None:
        """
        A code outside the table still gets OpenSSL's own text and the code.
        """
        text = VerifyFailure(43, 0, CLIENT_DN).describe()
        self.assertTrue(text.startswith("client certificate failed verification ("), text)
        self.assertIn("X509 verify error 43", text)

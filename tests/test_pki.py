"""
Tests for L{qemud.pki}: the certificates it makes, the files it writes, and
the C{qemud-pki} command line.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import os
import stat
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.trial.unittest import SynchronousTestCase

from qemud.pki import (
    PKIError,
    install,
    main,
    make_ca,
    make_client_cert,
    make_server_cert,
    parse_dn,
    revoke,
)
from qemud.tlsfiles import check_usage, find_issuer, is_revoked, render_dn


def _cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


class PKITests(SynchronousTestCase):
    """
    The library functions make certificates libvirt and qemud accept.
    """

    def setUp(self) -> None:
        self.base = self.mktemp()
        self.ca = os.path.join(self.base, "ca")
        make_ca(self.ca, cn="Test CA")

    def test_ca(self) -> None:
        """
        The CA is a self-signed RSA 2048 CA certificate with a critical
        CA:true and certificate signing; its key is 0600, its cert 0644.
        """
        cert = _cert(os.path.join(self.ca, "cacert.pem"))
        self.assertEqual(render_dn(cert.subject), "CN=Test CA")
        self.assertEqual(cert.issuer, cert.subject)
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        self.assertEqual(key.key_size, 2048)
        self.assertEqual(check_usage(cert, "ca", "ca"), ([], []))
        self.assertEqual(_mode(os.path.join(self.ca, "cakey.pem")), 0o600)
        self.assertEqual(_mode(os.path.join(self.ca, "cacert.pem")), 0o644)

    def test_server(self) -> None:
        """
        A server certificate carries every host and address as
        subjectAltName, serverAuth, is signed by the CA, and the CA
        certificate is copied beside it.
        """
        d = os.path.join(self.base, "srv")
        issued = make_server_cert(d, self.ca, ["localhost", "h.example"], ["127.0.0.1", "::1"])
        cert = _cert(issued.cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost", "h.example"])
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )
        self.assertEqual(check_usage(cert, "server", "s"), ([], []))
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertFalse(bc.ca)
        ca = _cert(os.path.join(d, "cacert.pem"))
        self.assertIs(find_issuer(cert, [ca]), ca)
        self.assertEqual(_mode(issued.key), 0o600)
        self.assertEqual(_mode(issued.cert), 0o644)

    def test_client(self) -> None:
        """
        A client certificate has the DN as written (certificate order) and
        clientAuth.
        """
        issued = make_client_cert(os.path.join(self.base, "c"), self.ca, "O=Research,CN=client1")
        cert = _cert(issued.cert)
        self.assertEqual(render_dn(cert.subject), "O=Research,CN=client1")
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(check_usage(cert, "client", "c"), ([], []))

    def test_parse_dn(self) -> None:
        """
        Both C{O=..,CN=..} and OpenSSL's C{/O=../CN=..} give the same name;
        escaped separators stay in the value; bad DNs are refused.
        """
        self.assertEqual(parse_dn("O=Research,CN=client1"), parse_dn("/O=Research/CN=client1"))
        self.assertEqual(render_dn(parse_dn("O=A\\,B,CN=c")), "O=A\\,B,CN=c")
        for bad in ("", "CN", "XX=1", "CN="):
            self.assertRaises(PKIError, parse_dn, bad)

    def test_expired(self) -> None:
        """
        C{days=-1} gives a certificate that has already expired; explicit
        dates are used as given, and a start after the end is refused.
        """
        now = datetime.datetime.now(datetime.UTC)
        cert = _cert(make_client_cert(os.path.join(self.base, "e"), self.ca, "CN=e", days=-1).cert)
        self.assertLess(cert.not_valid_after_utc, now)
        self.assertLess(cert.not_valid_before_utc, cert.not_valid_after_utc)
        start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
        end = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)
        cert = _cert(
            make_client_cert(
                os.path.join(self.base, "f"), self.ca, "CN=f", not_before=start, not_after=end
            ).cert
        )
        self.assertEqual((cert.not_valid_before_utc, cert.not_valid_after_utc), (start, end))
        self.assertRaises(
            PKIError,
            make_client_cert,
            os.path.join(self.base, "g"),
            self.ca,
            "CN=g",
            not_before=end,
            not_after=start,
        )

    def test_no_overwrite(self) -> None:
        """
        Existing files are left alone unless C{force}.
        """
        before = open(os.path.join(self.ca, "cacert.pem")).read()
        with self.assertRaises(PKIError) as cm:
            make_ca(self.ca)
        self.assertIn("exists already", str(cm.exception))
        self.assertEqual(open(os.path.join(self.ca, "cacert.pem")).read(), before)
        make_ca(self.ca, force=True)
        self.assertNotEqual(open(os.path.join(self.ca, "cacert.pem")).read(), before)
        self.assertEqual(_mode(os.path.join(self.ca, "cakey.pem")), 0o600)

    def test_revoke(self) -> None:
        """
        Revoking creates the CRL, a second revocation adds to it, and a
        certificate from another CA is refused.
        """
        a = make_client_cert(os.path.join(self.base, "a"), self.ca, "CN=a")
        b = make_client_cert(os.path.join(self.base, "b"), self.ca, "CN=b")
        crl_path = revoke(self.ca, a.cert)
        revoke(self.ca, b.cert)
        revoke(self.ca, b.cert)
        with open(crl_path, "rb") as f:
            crl = x509.load_pem_x509_crl(f.read())
        self.assertEqual(len(list(crl)), 2)
        self.assertTrue(is_revoked(_cert(a.cert), crl))
        self.assertTrue(crl.is_signature_valid(_cert(a.cacert).public_key()))  # type: ignore[arg-type]
        other = os.path.join(self.base, "ca2")
        make_ca(other)
        with self.assertRaises(PKIError) as cm:
            revoke(other, a.cert)
        self.assertIn("not issued by the CA", str(cm.exception))

    def test_install(self) -> None:
        """
        Installing puts server and client files in libvirt's system layout
        (under a staging root) or the user's C{~/.pki/libvirt}, keys 0600.
        """
        srv = make_server_cert(os.path.join(self.base, "s"), self.ca, ["localhost"])
        root = self.mktemp()
        written = install(os.path.dirname(srv.cert), root=root)
        self.assertEqual(
            sorted(os.path.relpath(p, root) for p in written),
            [
                "etc/pki/CA/cacert.pem",
                "etc/pki/libvirt/private/serverkey.pem",
                "etc/pki/libvirt/servercert.pem",
            ],
        )
        self.assertEqual(_mode(os.path.join(root, "etc/pki/libvirt/private/serverkey.pem")), 0o600)
        self.assertRaises(PKIError, install, os.path.dirname(srv.cert), root=root)
        cli = make_client_cert(os.path.join(self.base, "c"), self.ca, "CN=c")
        home = self.mktemp()
        written = install(os.path.dirname(cli.cert), user_home=home)
        self.assertEqual(
            sorted(os.path.basename(p) for p in written),
            ["cacert.pem", "clientcert.pem", "clientkey.pem"],
        )
        self.assertTrue(all(p.startswith(os.path.join(home, ".pki", "libvirt")) for p in written))


class CommandLineTests(SynchronousTestCase):
    """
    C{qemud-pki} is a thin layer: exit 0, 1 with C{error: ...}, or 2 on usage.
    """

    def test_whole_flow(self) -> None:
        """
        ca, server, client and revoke print the files they wrote and exit 0.
        """
        base = self.mktemp()
        ca, srv, cli = (os.path.join(base, n) for n in ("ca", "srv", "cli"))
        self.assertEqual(_run("ca", "--dir", ca, "--cn", "X")[0], 0)
        code, out, _ = _run(
            "server", "--dir", srv, "--ca-dir", ca, "--host", "localhost", "--ip", "127.0.0.1"
        )
        self.assertEqual(code, 0)
        self.assertEqual(
            out.split(),
            [os.path.join(srv, n) for n in ("servercert.pem", "serverkey.pem", "cacert.pem")],
        )
        self.assertEqual(
            _run("client", "--dir", cli, "--ca-dir", ca, "--dn", "/O=R/CN=c1", "--days", "-1")[0], 0
        )
        self.assertLess(
            _cert(os.path.join(cli, "clientcert.pem")).not_valid_after_utc,
            datetime.datetime.now(datetime.UTC),
        )
        code, out, _ = _run("revoke", "--ca-dir", ca, "--cert", os.path.join(cli, "clientcert.pem"))
        self.assertEqual((code, out.strip()), (0, os.path.join(ca, "cacrl.pem")))

    def test_errors(self) -> None:
        """
        A failing operation prints one C{error:} line and exits 1.
        """
        base = self.mktemp()
        code, out, err = _run("server", "--dir", base, "--ca-dir", base + "-nope", "--host", "h")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("error: Cannot read CA certificate"), err)
        self.assertEqual(err.count("\n"), 1)
        self.assertEqual(_run("ca", "--dir", base)[0], 0)
        code, _, err = _run("ca", "--dir", base)
        self.assertEqual(code, 1)
        self.assertIn("exists already", err)

    def test_usage(self) -> None:
        """
        Missing or malformed arguments exit 2.
        """
        self.assertEqual(_run()[0], 2)
        self.assertEqual(_run("ca")[0], 2)
        self.assertEqual(_run("client", "--dir", "x", "--ca-dir", "y")[0], 2)
        self.assertEqual(_run("ca", "--dir", "x", "--not-after", "someday")[0], 2)
        self.assertEqual(_run("install", "--from", "x")[0], 2)

    def test_console_script(self) -> None:
        """
        The module runs as a program with the same behaviour.
        """
        base = self.mktemp()
        result = subprocess.run(
            [sys.executable, "-m", "qemud.pki", "ca", "--dir", base],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.path.exists(os.path.join(base, "cacert.pem")))

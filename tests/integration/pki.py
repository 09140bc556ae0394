"""
A complete test PKI, made with L{qemud.pki} in a temporary directory.

Every directory is laid out the way its user expects: server directories
work as C{--pki-dir} (C{cacert.pem}, C{servercert.pem}, C{serverkey.pem},
C{cacrl.pem}), client directories as virsh's C{pkipath=} (C{cacert.pem},
C{clientcert.pem}, C{clientkey.pem}).  Making one costs about ten RSA key
generations (well under a second); L{shared_test_pki} makes one per process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from qemud.pki import make_ca, make_client_cert, make_server_cert, revoke

#: The DN of the good client certificate, as GnuTLS/libvirt render it.
CLIENT_DN = "O=Research,CN=client1"
#: The DN of the certificate that is valid but not on the usual allow-list.
OTHER_DN = "O=Elsewhere,CN=intruder"
#: The name in the server certificate that matches no host we connect to.
BAD_HOSTNAME = "tlsbad.invalid"


@dataclass(frozen=True)
class TestPKI:
    """
    Paths of a test PKI.

    @ivar base: the directory holding everything.
    @ivar ca_dir: the CA (C{cacert.pem}, C{cakey.pem}, C{cacrl.pem}).
    @ivar server_dir: server files for localhost, 127.0.0.1 and ::1, with
        the CRL (revoking C{revoked_client_dir}'s certificate).
    @ivar bad_name_server_dir: a server certificate for L{BAD_HOSTNAME}
        only, with the CRL.
    @ivar client_dir: a good client (DN L{CLIENT_DN}).
    @ivar other_dn_client_dir: a good client with DN L{OTHER_DN}.
    @ivar expired_client_dir: a client certificate that expired yesterday.
    @ivar revoked_client_dir: a client certificate listed in the CRL.
    @ivar other_ca_dir: a second, unrelated CA.
    @ivar other_ca_client_dir: a client certificate from the second CA (with
        the first CA's C{cacert.pem}, so that it trusts our server).
    @ivar anonymous_client_dir: only C{cacert.pem}, no client certificate.
    """

    __test__ = False  # not a test class, despite the name

    base: str
    ca_dir: str
    server_dir: str
    bad_name_server_dir: str
    client_dir: str
    other_dn_client_dir: str
    expired_client_dir: str
    revoked_client_dir: str
    other_ca_dir: str
    other_ca_client_dir: str
    anonymous_client_dir: str


def make_test_pki(base: str) -> TestPKI:
    """
    Make the whole test PKI under C{base} (created if missing).

    @return: its paths.
    """
    os.makedirs(base, exist_ok=True)

    def d(name: str) -> str:
        return os.path.join(base, name)

    pki = TestPKI(
        base=base,
        ca_dir=d("ca"),
        server_dir=d("server"),
        bad_name_server_dir=d("server-badname"),
        client_dir=d("client"),
        other_dn_client_dir=d("client-otherdn"),
        expired_client_dir=d("client-expired"),
        revoked_client_dir=d("client-revoked"),
        other_ca_dir=d("ca2"),
        other_ca_client_dir=d("client-ca2"),
        anonymous_client_dir=d("client-anonymous"),
    )
    make_ca(pki.ca_dir, cn="qemud test CA")
    make_ca(pki.other_ca_dir, cn="qemud other CA")
    make_server_cert(pki.server_dir, pki.ca_dir, ["localhost"], ["127.0.0.1", "::1"])
    make_server_cert(pki.bad_name_server_dir, pki.ca_dir, [BAD_HOSTNAME])
    make_client_cert(pki.client_dir, pki.ca_dir, CLIENT_DN)
    make_client_cert(pki.other_dn_client_dir, pki.ca_dir, OTHER_DN)
    make_client_cert(pki.expired_client_dir, pki.ca_dir, CLIENT_DN, days=-1)
    make_client_cert(pki.revoked_client_dir, pki.ca_dir, CLIENT_DN)
    make_client_cert(pki.other_ca_client_dir, pki.other_ca_dir, CLIENT_DN)
    # The client of the other CA must still trust our server.
    shutil.copyfile(
        os.path.join(pki.ca_dir, "cacert.pem"), os.path.join(pki.other_ca_client_dir, "cacert.pem")
    )
    os.makedirs(pki.anonymous_client_dir)
    shutil.copyfile(
        os.path.join(pki.ca_dir, "cacert.pem"), os.path.join(pki.anonymous_client_dir, "cacert.pem")
    )
    crl = revoke(pki.ca_dir, os.path.join(pki.revoked_client_dir, "clientcert.pem"))
    for server in (pki.server_dir, pki.bad_name_server_dir):
        shutil.copyfile(crl, os.path.join(server, "cacrl.pem"))
    return pki


_shared: TestPKI | None = None


def shared_test_pki() -> TestPKI:
    """
    @return: one test PKI per process, made on first use in a temporary
        directory that is removed at exit.  Tests must not modify it.
    """
    global _shared
    if _shared is None:
        import atexit

        base = tempfile.mkdtemp(prefix="qemud-test-pki-")
        atexit.register(shutil.rmtree, base, True)
        _shared = make_test_pki(base)
    return _shared

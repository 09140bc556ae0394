# -*- test-case-name: tests.daemon.test_tls -*-
"""
TLS files in libvirt's layout, and the certificate checks both ends share.

Where the CA certificate, the server or client certificate and key and the
CRL live (C{--pki-dir}/C{pkipath=}, C{~/.pki/libvirt/}, C{/etc/pki/...}),
reading and parsing them with readable errors, the libvirt-style usage checks
(basicConstraints, keyUsage, extendedKeyUsage: fatal only when the extension
is critical) and the rendering of a distinguished name the way GnuTLS (and so
libvirt's C{tls_allowed_dn_list}) sees it.

This module uses C{cryptography} but not Twisted, so the daemon and the
client can both import it.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from qemud.errors import ERR_SYSTEM_ERROR, FROM_RPC, QemudError

#: The private key types both C{cryptography} and pyOpenSSL handle.
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

#: What a certificate is for, in the usage checks.
Role = Literal["ca", "server", "client"]

SYSTEM_CA_DIR = "/etc/pki/CA"
SYSTEM_LIBVIRT_DIR = "/etc/pki/libvirt"


class TLSConfigError(QemudError):
    """
    A TLS certificate, key, CA or CRL file is missing, unreadable, malformed
    or unfit for use; the detail names the file and the problem.
    """

    code = ERR_SYSTEM_ERROR
    domain = FROM_RPC
    prefix = "%s"


@dataclass(frozen=True)
class TLSFiles:
    """
    The paths of one side's TLS files.

    @ivar cacert: the CA certificate(s) that sign the peer's certificate.
    @ivar cert: our own certificate.
    @ivar key: the private key of C{cert}.
    @ivar crl: the CA's revocation list; used only if the file exists.
    """

    cacert: str
    cert: str
    key: str
    crl: str


def user_pki_dir(home: str | None = None) -> str:
    """
    @param home: the home directory (default: C{~}).
    @return: C{~/.pki/libvirt}, where non-root libvirt keeps its TLS files.
    """
    return os.path.join(home if home is not None else os.path.expanduser("~"), ".pki", "libvirt")


def server_files(pki_dir: str | None, session: bool, *, home: str | None = None) -> TLSFiles:
    """
    Locate the server's TLS files the way libvirtd does.

    @param pki_dir: a directory holding C{cacert.pem}, C{servercert.pem},
        C{serverkey.pem} and optionally C{cacrl.pem}; C{None} for the defaults.
    @param session: C{True} for a per-user daemon (C{~/.pki/libvirt/}),
        C{False} for the system daemon (C{/etc/pki/...}).
    @param home: the home directory for session mode (default: C{~}).
    @return: the four paths.
    """
    if pki_dir is None and session:
        pki_dir = user_pki_dir(home)
    if pki_dir is not None:
        return TLSFiles(
            cacert=os.path.join(pki_dir, "cacert.pem"),
            cert=os.path.join(pki_dir, "servercert.pem"),
            key=os.path.join(pki_dir, "serverkey.pem"),
            crl=os.path.join(pki_dir, "cacrl.pem"),
        )
    return TLSFiles(
        cacert=os.path.join(SYSTEM_CA_DIR, "cacert.pem"),
        cert=os.path.join(SYSTEM_LIBVIRT_DIR, "servercert.pem"),
        key=os.path.join(SYSTEM_LIBVIRT_DIR, "private", "serverkey.pem"),
        crl=os.path.join(SYSTEM_CA_DIR, "cacrl.pem"),
    )


def client_files(
    pki_dir: str | None, *, home: str | None = None, is_root: bool | None = None
) -> TLSFiles:
    """
    Locate a client's TLS files the way libvirt's client library does: all
    from C{pkipath} if given; else, for a non-root user, each file from
    C{~/.pki/libvirt/} if it exists there, otherwise from C{/etc/pki/}.

    @param pki_dir: the C{pkipath=} URI parameter, or C{None}.
    @param home: the home directory (default: C{~}).
    @param is_root: whether we run as root (default: ask the OS).
    @return: the four paths.
    """
    if pki_dir is not None:
        return TLSFiles(
            cacert=os.path.join(pki_dir, "cacert.pem"),
            cert=os.path.join(pki_dir, "clientcert.pem"),
            key=os.path.join(pki_dir, "clientkey.pem"),
            crl=os.path.join(pki_dir, "cacrl.pem"),
        )
    system = TLSFiles(
        cacert=os.path.join(SYSTEM_CA_DIR, "cacert.pem"),
        cert=os.path.join(SYSTEM_LIBVIRT_DIR, "clientcert.pem"),
        key=os.path.join(SYSTEM_LIBVIRT_DIR, "private", "clientkey.pem"),
        crl=os.path.join(SYSTEM_CA_DIR, "cacrl.pem"),
    )
    if is_root is None:
        is_root = os.geteuid() == 0
    if is_root:
        return system
    user = user_pki_dir(home)

    def pick(name: str, fallback: str) -> str:
        candidate = os.path.join(user, name)
        return candidate if os.path.exists(candidate) else fallback

    return TLSFiles(
        cacert=pick("cacert.pem", system.cacert),
        cert=pick("clientcert.pem", system.cert),
        key=pick("clientkey.pem", system.key),
        crl=pick("cacrl.pem", system.crl),
    )


def read_file(path: str, what: str) -> bytes:
    """
    @param path: the file to read.
    @param what: what the file holds, for the error message.
    @return: its contents.
    @raise TLSConfigError: when it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"Cannot read {what} '{path}': {e.strerror or e}") from e


def load_certificates(path: str, what: str) -> list[x509.Certificate]:
    """
    @param path: a PEM file with one or more certificates.
    @param what: what the file holds, for the error message.
    @return: the certificates, in file order.
    @raise TLSConfigError: when it cannot be read or holds no valid certificate.
    """
    data = read_file(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSConfigError(f"Unable to parse {what} '{path}': {e}") from e
    return certs


def load_certificate(path: str, what: str) -> x509.Certificate:
    """
    @param path: a PEM file; its first certificate is used.
    @param what: what the file holds, for the error message.
    @return: the certificate.
    @raise TLSConfigError: when it cannot be read or parsed.
    """
    return load_certificates(path, what)[0]


def load_private_key(path: str, what: str) -> PrivateKey:
    """
    @param path: a PEM file with an unencrypted private key.
    @param what: what the file holds, for the error message.
    @return: the key.
    @raise TLSConfigError: when it cannot be read or parsed, or is of a type
        TLS cannot use.
    """
    data = read_file(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigError(f"Unable to parse {what} '{path}': {e}") from e
    if not isinstance(
        key,
        (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
            ed448.Ed448PrivateKey,
        ),
    ):
        raise TLSConfigError(f"Unsupported key type in {what} '{path}': {type(key).__name__}")
    return key


def load_crl(path: str, what: str = "CA revocation list") -> x509.CertificateRevocationList:
    """
    @param path: a PEM certificate revocation list.
    @param what: what the file holds, for the error message.
    @return: the CRL.
    @raise TLSConfigError: when it cannot be read or parsed.
    """
    data = read_file(path, what)
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError as e:
        raise TLSConfigError(f"Unable to parse {what} '{path}': {e}") from e


def _spki(key: object) -> bytes:
    public_bytes = key.public_bytes  # type: ignore[attr-defined]
    data: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def check_key_matches(
    cert: x509.Certificate, key: PrivateKey, cert_path: str, key_path: str
) -> None:
    """
    @raise TLSConfigError: when C{key} is not the private half of C{cert}'s key.
    """
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise TLSConfigError(
            f"The private key '{key_path}' does not match the certificate '{cert_path}'"
        )


def check_validity(
    cert: x509.Certificate, path: str, what: str, now: datetime.datetime | None = None
) -> None:
    """
    @param now: the time to check against (default: now, UTC).
    @raise TLSConfigError: when the certificate has expired or is not yet active.
    """
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        raise TLSConfigError(f"The {what} '{path}' has expired")
    if cert.not_valid_before_utc > now:
        raise TLSConfigError(f"The {what} '{path}' is not yet active")


def find_issuer(cert: x509.Certificate, cas: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """
    @return: the CA among C{cas} whose key signed C{cert}, or C{None}.
    """
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def is_revoked(cert: x509.Certificate, crl: x509.CertificateRevocationList) -> bool:
    """
    @return: whether C{crl} (assumed to be from C{cert}'s issuer) lists C{cert}.
    """
    return (
        crl.issuer == cert.issuer
        and crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    )


def check_usage(cert: x509.Certificate, role: Role, path: str) -> tuple[list[str], list[str]]:
    """
    Check basicConstraints, keyUsage and extendedKeyUsage as libvirt does
    (C{virNetTLSContextCheckCert*}): a mismatch is fatal when the extension
    is marked critical, else only worth a warning; a missing extension is
    no objection.

    @param role: what the certificate must be good for.
    @param path: the file (or peer) named in the messages.
    @return: C{(errors, warnings)}, each a list of messages.
    """
    errors: list[str] = []
    warnings: list[str] = []

    def complain(critical: bool, message: str) -> None:
        (errors if critical else warnings).append(message)

    is_ca_wanted = role == "ca"
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        pass
    else:
        if bc.value.ca and not is_ca_wanted:
            complain(
                bc.critical,
                f"The certificate {path} basic constraints show a CA, but we need one for a {role}",
            )
        elif not bc.value.ca and is_ca_wanted:
            complain(bc.critical, f"The certificate {path} basic constraints do not show a CA")

    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        pass
    else:
        if is_ca_wanted:
            if not ku.value.key_cert_sign:
                complain(
                    ku.critical, f"Certificate {path} usage does not permit certificate signing"
                )
        else:
            if not ku.value.digital_signature:
                complain(ku.critical, f"Certificate {path} usage does not permit digital signature")
            if not ku.value.key_encipherment:
                complain(ku.critical, f"Certificate {path} usage does not permit key encipherment")

    if not is_ca_wanted:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            pass
        else:
            wanted = (
                ExtendedKeyUsageOID.SERVER_AUTH
                if role == "server"
                else ExtendedKeyUsageOID.CLIENT_AUTH
            )
            if wanted not in eku.value:
                complain(
                    eku.critical,
                    f"Certificate {path} purpose does not allow use for with a TLS {role}",
                )
    return errors, warnings


# GnuTLS's short names (lib/x509/common.c); anything else is a dotted OID.
_SHORT_NAMES: dict[ObjectIdentifier, str] = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.COMMON_NAME: "CN",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.TITLE: "title",
    NameOID.SURNAME: "surName",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.INITIALS: "initials",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.EMAIL_ADDRESS: "EMAIL",
}

_SPECIALS = frozenset(',+"\\<>;')


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in _SPECIALS or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def render_dn(name: x509.Name) -> str:
    """
    Render a distinguished name as GnuTLS's C{gnutls_x509_crt_get_dn} does,
    which is what libvirt matches C{tls_allowed_dn_list} against: the RDNs
    in certificate order (not RFC 4514's reversed order) joined by C{,},
    multi-valued RDNs joined by C{+}, RFC 4514 escaping.  A certificate made
    for C{/O=Research/CN=client1} renders as C{O=Research,CN=client1}.

    @param name: the subject (or issuer).
    @return: the DN string.
    """
    parts = []
    for rdn in name.rdns:
        attrs = []
        for attr in rdn:
            key = _SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)
            value = attr.value
            if isinstance(value, bytes):
                attrs.append(f"{key}=#{value.hex()}")
            else:
                attrs.append(f"{key}={_escape(value)}")
        parts.append("+".join(attrs))
    return ",".join(parts)


def dn_allowed(dn: str, patterns: Sequence[str]) -> bool:
    """
    @param dn: a DN as rendered by L{render_dn}.
    @param patterns: globs (C{*}, C{?}, C{[...]}), as in libvirt's
        C{tls_allowed_dn_list}; matching is case-sensitive.
    @return: whether any pattern matches the whole DN.
    """
    return any(fnmatch.fnmatchcase(dn, pattern) for pattern in patterns)

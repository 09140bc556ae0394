# -*- test-case-name: tests.test_pki -*-
"""
C{qemud-pki}: make a small X.509 PKI for qemud and libvirt clients.

A CA, server certificates (with subjectAltNames for host names and
addresses), client certificates (with a chosen DN, matched by the daemon's
C{allowed_dn} list), revocation (a CRL beside the CA) and installation into
libvirt's file layout.  RSA 2048 keys and SHA-256 signatures, which GnuTLS
(virsh) and OpenSSL (qemud) both accept.

The library functions (L{make_ca}, L{make_server_cert}, L{make_client_cert},
L{revoke}, L{install}) do the work; L{main} is a thin command line over them.
Keys are written mode 0600, certificates and CRLs 0644, and an existing file
is never replaced unless C{force} is given.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from qemud.errors import QemudError
from qemud.tlsfiles import (
    PrivateKey,
    TLSConfigError,
    load_certificate,
    load_crl,
    load_private_key,
)

KEY_MODE = 0o600
CERT_MODE = 0o644

CA_CERT = "cacert.pem"
CA_KEY = "cakey.pem"
CA_CRL = "cacrl.pem"


class PKIError(QemudError):
    """A PKI operation failed; the detail says which file and why."""

    prefix = "%s"


@dataclass(frozen=True)
class Validity:
    """
    A certificate's validity period.

    @ivar not_before: start (UTC).
    @ivar not_after: end (UTC).
    """

    not_before: datetime.datetime
    not_after: datetime.datetime

    @classmethod
    def for_days(
        cls,
        days: int,
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        now: datetime.datetime | None = None,
    ) -> Validity:
        """
        @param days: lifetime from now; zero or negative gives a certificate
            that has already expired (C{days=-1}: expired yesterday).
        @param not_before: explicit start, overriding the computed one.
        @param not_after: explicit end, overriding the computed one.
        @param now: the current time (default: now).
        @return: the period; a start five minutes in the past allows for
            clock skew, and the start is always at least a day before the end.
        @raise PKIError: when the explicit start is after the end.
        """
        if now is None:
            now = datetime.datetime.now(datetime.UTC)
        end = not_after if not_after is not None else now + datetime.timedelta(days=days)
        start = (
            not_before
            if not_before is not None
            else min(now - datetime.timedelta(minutes=5), end - datetime.timedelta(days=1))
        )
        if start >= end:
            raise PKIError(
                f"not-before {start.isoformat()} is not before not-after {end.isoformat()}"
            )
        return cls(start, end)


_DN_KEYS: dict[str, ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
}


def parse_dn(text: str) -> x509.Name:
    """
    Parse a DN written in certificate order, either C{O=Research,CN=client1}
    (the way GnuTLS and libvirt print it) or OpenSSL's C{/O=Research/CN=client1}.
    Both give a subject that libvirt and qemud render as C{O=Research,CN=client1}.
    A C{,} or C{/} inside a value is escaped with a backslash.

    @param text: the DN.
    @return: the name, RDNs in the order written.
    @raise PKIError: on an empty DN, a part without C{=}, or an unknown
        attribute name.
    """
    sep = "/" if text.startswith("/") else ","
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text[1:] if sep == "/" else text)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    rdns = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not value:
            raise PKIError(f"invalid DN component {part!r} in {text!r} (expected KEY=VALUE)")
        oid = _DN_KEYS.get(key.strip().upper())
        if oid is None:
            raise PKIError(f"unknown DN attribute {key.strip()!r} in {text!r}")
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]))
    if not rdns:
        raise PKIError(f"empty DN {text!r}")
    return x509.Name(rdns)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_free(paths: Sequence[str], force: bool) -> None:
    if force:
        return
    for path in paths:
        if os.path.lexists(path):
            raise PKIError(f"'{path}' exists already (use --force to replace it)")


def write_file(path: str, data: bytes, mode: int, *, force: bool = False) -> None:
    """
    Write a file with exactly C{mode}, atomically: a temporary file in the
    same directory, fsync, then rename (or a hard link when not forcing, so
    that an existing file is never replaced).

    @param force: replace an existing file.
    @raise PKIError: when the file exists (and not C{force}) or writing fails.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as e:
        raise PKIError(f"cannot write '{path}': {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as e:
                raise PKIError(f"'{path}' exists already (use --force to replace it)") from e
            os.unlink(tmp)
    except OSError as e:
        raise PKIError(f"cannot write '{path}': {e.strerror or e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class Issued:
    """
    What one command wrote.

    @ivar cert: the certificate's path.
    @ivar key: the private key's path.
    @ivar cacert: the CA certificate's path (for a CA, the same as C{cert}).
    """

    cert: str
    key: str
    cacert: str


def _load_ca(ca_dir: str) -> tuple[x509.Certificate, PrivateKey]:
    try:
        cert = load_certificate(os.path.join(ca_dir, CA_CERT), "CA certificate")
        key = load_private_key(os.path.join(ca_dir, CA_KEY), "CA key")
    except TLSConfigError as e:
        raise PKIError(e.detail) from e
    return cert, key


def make_ca(
    directory: str,
    *,
    cn: str = "qemud CA",
    days: int = 3650,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    force: bool = False,
) -> Issued:
    """
    Create a self-signed CA: C{cacert.pem} and C{cakey.pem} in C{directory}.

    @param cn: the CA's common name.
    @param days: lifetime (see L{Validity.for_days}).
    @return: the paths written.
    @raise PKIError: when a file exists (and not C{force}) or cannot be written.
    """
    cert_path = os.path.join(directory, CA_CERT)
    key_path = os.path.join(directory, CA_KEY)
    _check_free([cert_path, key_path], force)
    validity = Validity.for_days(days, not_before=not_before, not_after=not_after)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), KEY_MODE, force=force)
    write_file(cert_path, _cert_pem(cert), CERT_MODE, force=force)
    return Issued(cert=cert_path, key=key_path, cacert=cert_path)


def _issue(
    ca_dir: str,
    directory: str,
    stem: str,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    usage: ObjectIdentifier,
    validity: Validity,
    force: bool,
) -> Issued:
    cert_path = os.path.join(directory, f"{stem}cert.pem")
    key_path = os.path.join(directory, f"{stem}key.pem")
    cacert_path = os.path.join(directory, CA_CERT)
    same_dir = os.path.abspath(directory) == os.path.abspath(ca_dir)
    _check_free([cert_path, key_path] + ([] if same_dir else [cacert_path]), force)
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_file(key_path, _key_pem(key), KEY_MODE, force=force)
    write_file(cert_path, _cert_pem(cert), CERT_MODE, force=force)
    if not same_dir:
        write_file(cacert_path, _cert_pem(ca_cert), CERT_MODE, force=force)
    return Issued(cert=cert_path, key=key_path, cacert=cacert_path)


def make_server_cert(
    directory: str,
    ca_dir: str,
    hosts: Sequence[str],
    ips: Sequence[str] = (),
    *,
    days: int = 1095,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    force: bool = False,
) -> Issued:
    """
    Create C{servercert.pem} + C{serverkey.pem} signed by the CA in
    C{ca_dir}, and copy C{cacert.pem} beside them.  The subject is
    C{CN=<first host>}; every host and address goes in subjectAltName.

    @param hosts: DNS names (at least one).
    @param ips: IPv4/IPv6 addresses.
    @return: the paths written.
    @raise PKIError: no host, a bad address, an unusable CA, or a file exists.
    """
    if not hosts:
        raise PKIError("a server certificate needs at least one --host name")
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    for ip in ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as e:
            raise PKIError(f"invalid IP address {ip!r}") from e
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    validity = Validity.for_days(days, not_before=not_before, not_after=not_after)
    return _issue(
        ca_dir, directory, "server", subject, sans, ExtendedKeyUsageOID.SERVER_AUTH, validity, force
    )


def make_client_cert(
    directory: str,
    ca_dir: str,
    dn: str,
    *,
    days: int = 1095,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    force: bool = False,
) -> Issued:
    """
    Create C{clientcert.pem} + C{clientkey.pem} signed by the CA in
    C{ca_dir}, and copy C{cacert.pem} beside them.

    @param dn: the subject, see L{parse_dn} (e.g. C{O=Research,CN=client1}).
    @return: the paths written.
    @raise PKIError: a bad DN, an unusable CA, or a file exists.
    """
    subject = parse_dn(dn)
    validity = Validity.for_days(days, not_before=not_before, not_after=not_after)
    return _issue(
        ca_dir, directory, "client", subject, [], ExtendedKeyUsageOID.CLIENT_AUTH, validity, force
    )


def revoke(ca_dir: str, cert_file: str, *, days: int = 365) -> str:
    """
    Add a certificate to the CA's revocation list C{cacrl.pem} (created if
    missing), re-signing the list with a fresh next-update date.

    @param cert_file: the certificate to revoke; it must be issued by the CA.
    @param days: until when the new list is valid.
    @return: the CRL's path.
    @raise PKIError: an unusable CA, CRL or certificate, or a certificate
        from another CA.
    """
    ca_cert, ca_key = _load_ca(ca_dir)
    try:
        cert = load_certificate(cert_file, "certificate")
    except TLSConfigError as e:
        raise PKIError(e.detail) from e
    if cert.issuer != ca_cert.subject:
        raise PKIError(f"certificate '{cert_file}' was not issued by the CA in '{ca_dir}'")
    crl_path = os.path.join(ca_dir, CA_CRL)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=days))
    )
    serials = set()
    if os.path.exists(crl_path):
        try:
            old = load_crl(crl_path)
        except TLSConfigError as e:
            raise PKIError(e.detail) from e
        for entry in old:
            serials.add(entry.serial_number)
            builder = builder.add_revoked_certificate(entry)
    if cert.serial_number not in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - datetime.timedelta(minutes=5))
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    write_file(crl_path, crl.public_bytes(serialization.Encoding.PEM), CERT_MODE, force=True)
    return crl_path


def install_plan(
    source: str, *, user_home: str | None, root: str = "/"
) -> list[tuple[str, str, int]]:
    """
    Where each file found in C{source} goes in libvirt's layout.

    @param source: a directory made by this tool (server or client files).
    @param user_home: install under C{<home>/.pki/libvirt/}; C{None} for the
        system layout (C{/etc/pki/CA/}, C{/etc/pki/libvirt/[private/]}).
    @param root: prefix for the system layout (for staging, like DESTDIR).
    @return: C{(source path, destination path, mode)} for each file present.
    """
    if user_home is not None:
        base = os.path.join(user_home, ".pki", "libvirt")
        dests = {
            name: os.path.join(base, name)
            for name in (
                CA_CERT,
                CA_CRL,
                "servercert.pem",
                "serverkey.pem",
                "clientcert.pem",
                "clientkey.pem",
            )
        }
    else:
        etc = os.path.join(root, "etc", "pki")
        dests = {
            CA_CERT: os.path.join(etc, "CA", CA_CERT),
            CA_CRL: os.path.join(etc, "CA", CA_CRL),
            "servercert.pem": os.path.join(etc, "libvirt", "servercert.pem"),
            "serverkey.pem": os.path.join(etc, "libvirt", "private", "serverkey.pem"),
            "clientcert.pem": os.path.join(etc, "libvirt", "clientcert.pem"),
            "clientkey.pem": os.path.join(etc, "libvirt", "private", "clientkey.pem"),
        }
    plan = []
    for name, dest in dests.items():
        src = os.path.join(source, name)
        if os.path.exists(src):
            plan.append((src, dest, KEY_MODE if name.endswith("key.pem") else CERT_MODE))
    return plan


def install(
    source: str, *, user_home: str | None = None, root: str = "/", force: bool = False
) -> list[str]:
    """
    Copy the files in C{source} into libvirt's layout (see L{install_plan}).

    @return: the destination paths written.
    @raise PKIError: nothing to install, a destination exists (and not
        C{force}), or a copy fails.
    """
    plan = install_plan(source, user_home=user_home, root=root)
    if not plan:
        raise PKIError(f"no certificate or key files found in '{source}'")
    _check_free([dest for _, dest, _ in plan], force)
    written = []
    for src, dest, mode in plan:
        try:
            with open(src, "rb") as f:
                data = f.read()
        except OSError as e:
            raise PKIError(f"cannot read '{src}': {e.strerror or e}") from e
        write_file(dest, data, mode, force=force)
        written.append(dest)
    return written


def _timestamp(text: str) -> datetime.datetime:
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid timestamp {text!r} (use ISO 8601)") from e
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qemud-pki",
        description="Make CA, server and client certificates for qemud/libvirt TLS.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def validity(p: argparse.ArgumentParser, days: int) -> None:
        p.add_argument(
            "--days",
            type=int,
            default=days,
            help=f"lifetime in days (default {days}; 0 or less: already expired)",
        )
        p.add_argument("--not-before", type=_timestamp, help="explicit start (ISO 8601, UTC)")
        p.add_argument("--not-after", type=_timestamp, help="explicit end (ISO 8601, UTC)")
        p.add_argument("--force", action="store_true", help="replace existing files")

    ca = sub.add_parser("ca", help="create a CA (cacert.pem, cakey.pem)")
    ca.add_argument("--dir", required=True)
    ca.add_argument("--cn", default="qemud CA")
    validity(ca, 3650)

    server = sub.add_parser("server", help="create servercert.pem + serverkey.pem")
    server.add_argument("--dir", required=True)
    server.add_argument("--ca-dir", required=True)
    server.add_argument("--host", nargs="+", required=True, action="extend")
    server.add_argument("--ip", nargs="+", default=[], action="extend")
    validity(server, 1095)

    client = sub.add_parser("client", help="create clientcert.pem + clientkey.pem")
    client.add_argument("--dir", required=True)
    client.add_argument("--ca-dir", required=True)
    client.add_argument("--dn", required=True, help="e.g. 'O=Research,CN=client1'")
    validity(client, 1095)

    rev = sub.add_parser("revoke", help="add a certificate to the CA's cacrl.pem")
    rev.add_argument("--ca-dir", required=True)
    rev.add_argument("--cert", required=True)
    rev.add_argument("--days", type=int, default=365, help="CRL validity (default 365)")

    inst = sub.add_parser("install", help="copy files into libvirt's layout")
    where = inst.add_mutually_exclusive_group(required=True)
    where.add_argument("--system", action="store_true", help="/etc/pki/CA, /etc/pki/libvirt")
    where.add_argument("--user", action="store_true", help="~/.pki/libvirt")
    inst.add_argument("--from", dest="source", required=True, help="directory made by this tool")
    inst.add_argument("--root", default="/", help="prefix for --system (staging)")
    inst.add_argument("--force", action="store_true", help="replace existing files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{qemud-pki} command.

    @param argv: the arguments (default: C{sys.argv[1:]}).
    @return: 0 on success, 1 on an error (printed as C{error: ...}); a
        usage error exits with status 2 through argparse.
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "ca":
            issued = make_ca(
                args.dir,
                cn=args.cn,
                days=args.days,
                not_before=args.not_before,
                not_after=args.not_after,
                force=args.force,
            )
            written = [issued.cert, issued.key]
        elif args.command == "server":
            issued = make_server_cert(
                args.dir,
                args.ca_dir,
                args.host,
                args.ip,
                days=args.days,
                not_before=args.not_before,
                not_after=args.not_after,
                force=args.force,
            )
            written = [issued.cert, issued.key, issued.cacert]
        elif args.command == "client":
            issued = make_client_cert(
                args.dir,
                args.ca_dir,
                args.dn,
                days=args.days,
                not_before=args.not_before,
                not_after=args.not_after,
                force=args.force,
            )
            written = [issued.cert, issued.key, issued.cacert]
        elif args.command == "revoke":
            written = [revoke(args.ca_dir, args.cert, days=args.days)]
        else:
            written = install(
                args.source,
                user_home=os.path.expanduser("~") if args.user else None,
                root=args.root,
                force=args.force,
            )
    except QemudError as e:
        print(f"error: {e.detail}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""
The real daemon (C{twistd -n qemud --listen-tls ...}) against the real virsh
9.0 (GnuTLS), libvirt-python and OpenSSL clients, with certificates made by
the project's PKI tooling (L{tests.integration.pki}).

Handshake-level behaviour of L{qemud.daemon.tls} alone is in
L{tests.integration.test_tls_handshake}; here each case goes through the
whole daemon: its options, its start-up checks, its log, and the RPC server
behind TLS.  Expected client output comes from C{shared/wire-traces/tls-*}.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from qemud.pki import make_server_cert
from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    kill_pids,
    require_libvirt_python,
    require_tools,
    trace_output,
    virsh,
    virsh_ok,
    wait_until,
)
from tests.integration.guests import noos_guest_domain_xml
from tests.integration.pki import BAD_HOSTNAME, CLIENT_DN, OTHER_DN, TestPKI, make_test_pki
from tests.integration.tls_daemon import (
    LOCALHOST_V4,
    LOCALHOST_V6,
    TLSDaemon,
    free_port,
    raw_connection_closed_by_server,
    run_daemon_expecting_failure,
    start_poller,
    tls_probe,
    wait_for_log,
)

pytestmark = pytest.mark.integration

_names = itertools.count(1)

#: The log prefix of a refused TLS client on IPv4 loopback.
REFUSED_V4 = r"TLS client 127\.0\.0\.1:(\d+) refused: "


def unique(prefix: str = "tls") -> str:
    """
    @return: a domain name no other test of this run uses; names with
        prefixes of one length have one length (virsh's table widths).
    """
    return f"{prefix}{os.getpid() % 1000:03d}n{next(_names):03d}"


@pytest.fixture(scope="module")
def pki() -> Iterator[TestPKI]:
    """The test PKI, made fresh for this module and removed afterwards."""
    base = tempfile.mkdtemp(prefix="qdpki", dir="/tmp")
    try:
        yield make_test_pki(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def running(daemon: TLSDaemon) -> TLSDaemon:
    """
    @return: C{daemon}, for a C{with} block that starts it and cleans up
        (skipped, or failed in CI, without virsh).
    """
    require_tools(VIRSH)
    return daemon


def assert_trace_errors(proc: subprocess.CompletedProcess[str], trace: str) -> None:
    """
    Check virsh printed nothing on stdout and exactly the error lines of
    the wire trace C{trace} on stderr.
    """
    assert proc.stdout == ""
    assert proc.stderr.rstrip("\n") == trace_output(trace).rstrip("\n")


@pytest.fixture(scope="module")
def tls_daemon(pki: TestPKI) -> Iterator[TLSDaemon]:
    """
    A daemon with TLS on 127.0.0.1 and [::1], the server certificate for
    localhost/127.0.0.1/::1, and the CRL; no DN allow-list.  Shared by the
    tests that only connect.
    """
    with running(TLSDaemon(pki.server_dir, v6=True)) as daemon:
        yield daemon


def combined(proc: subprocess.CompletedProcess[str]) -> str:
    """@return: stdout and stderr, stripped, as one text."""
    return (proc.stdout.strip() + "\n" + proc.stderr.strip()).strip()


def virsh_fails(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    """
    Run virsh and insist it exits 1.

    @return: the completed process.
    """
    proc = virsh(uri, *args)
    assert proc.returncode == 1, (
        f"virsh {' '.join(args)} exited {proc.returncode}, expected 1\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def write_guest(daemon: DaemonProcess, name: str) -> str:
    """@return: the path of a no-OS guest's XML file below the daemon's root."""
    path = os.path.join(daemon.root, name + ".xml")
    with open(path, "w") as f:
        f.write(noos_guest_domain_xml(name))
    return path


class VirshOverTLSTests:
    """
    virsh over C{qemu+tls://} behaves exactly as over the UNIX socket.
    """

    def lifecycle(self, daemon: DaemonProcess, uri: str, name: str) -> list[str]:
        """
        list, define, start, dominfo, destroy, undefine, list with virsh at
        C{uri}; each must exit 0.

        @return: their outputs, with the name, uuid, id, XML path and CPU
            time replaced by placeholders.
        """
        path = write_guest(daemon, name)
        outputs = []
        steps: list[tuple[str, ...]] = [
            ("list", "--all"), ("define", path), ("list", "--all"), ("start", name),
            ("list", "--all"), ("dominfo", name), ("destroy", name), ("dominfo", name),
            ("undefine", name), ("list", "--all"),
        ]
        for step in steps:
            outputs.append(virsh_ok(uri, *step))
        uuid = re.search(r"UUID:\s+(\S+)", outputs[5])
        assert uuid is not None, outputs[5]
        normalised = []
        for out in outputs:
            out = out.replace(path, "PATH").replace(uuid.group(1), "UUID")
            out = re.sub(rf"\b{re.escape(name)}\b", "NAME", out)
            out = re.sub(r"(?m)^(Id:\s+)\d+$", r"\1N", out)
            out = re.sub(r"(?m)^( +)\d+( +NAME)", r"\1N\2", out)
            out = re.sub(r"(?m)^(CPU time:\s+)\S+$", r"\1T", out)
            normalised.append(out)
        return normalised

    def test_lifecycle_same_as_unix(self, pki: TestPKI) -> None:
        """
        list --all, define, start, dominfo, destroy and undefine of a no-OS
        guest all exit 0 over TLS and print what they print over the UNIX
        socket; the daemon logs the client as accepted with its DN.
        """
        with running(TLSDaemon(pki.server_dir)) as daemon:
            over_unix = self.lifecycle(daemon, daemon.uri, unique("ux"))
            over_tls = self.lifecycle(daemon, daemon.tls_uri(pki.client_dir), unique("tl"))
            assert over_tls == over_unix
            assert "Domain 'NAME' started" in over_tls[3]
            assert "State:          running" in over_tls[5]
            wait_for_log(daemon, r"TLS client 127\.0\.0\.1:\d+ accepted \(DN "
                         + re.escape(repr(CLIENT_DN)) + r"\)")

    def test_list_all_output_as_libvirtd(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        C{virsh list --all} over TLS with an empty daemon prints libvirtd's
        empty table, as over UNIX.
        """
        out = virsh_ok(tls_daemon.tls_uri(pki.client_dir), "list", "--all")
        assert out == trace_output("list-all-empty.txt")
        assert out == virsh_ok(tls_daemon.uri, "list", "--all")

    def test_ipv6(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        With C{--listen-tls [::1]:PORT}, virsh accepts the bracketed URI
        C{qemu+tls://[::1]:PORT/system}, verifies the server certificate
        through its IP SAN ::1, and gets the same answers as over UNIX; the
        daemon logs the IPv6 peer.
        """
        uri = tls_daemon.tls_uri(pki.client_dir, host=LOCALHOST_V6)
        assert uri.startswith("qemu+tls://[::1]:")
        assert virsh_ok(uri, "list", "--all") == virsh_ok(tls_daemon.uri, "list", "--all")
        assert virsh_ok(uri, "hostname") == virsh_ok(tls_daemon.uri, "hostname")
        wait_for_log(tls_daemon, r"TLS client ::1:\d+ accepted \(DN "
                     + re.escape(repr(CLIENT_DN)) + r"\)")


class TLSRefusalTests:
    """
    Every refused client, from both sides: what the client sees (virsh's
    error text, or for certificates virsh will not present, what an OpenSSL
    client receives) and the daemon's log line with the client's address,
    DN and the reason.
    """

    def cacert(self, pki: TestPKI) -> str:
        """@return: the CA certificate that signed the server."""
        return os.path.join(pki.ca_dir, "cacert.pem")

    def test_other_ca(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        virsh will not even present a certificate from another CA (it checks
        its own against its cacert.pem); an OpenSSL client that does is
        refused without the confirmation byte, and the daemon logs its
        address, DN and "unable to get local issuer certificate".
        """
        uri = tls_daemon.tls_uri(pki.other_ca_client_dir)
        proc = virsh_fails(uri, "list", "--all")
        assert "failed validation against" in proc.stderr
        probe = tls_probe(LOCALHOST_V4, tls_daemon.port(), pki.other_ca_client_dir,
                          self.cacert(pki))
        assert not probe.confirmed, probe
        wait_for_log(tls_daemon, rf"TLS client 127\.0\.0\.1:{probe.local_port} refused: "
                     rf".*unable to get local issuer certificate.*{re.escape(repr(CLIENT_DN))}")

    def test_no_client_certificate(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        virsh without a client certificate is refused with libvirtd's exact
        output (tls-no-client-cert.txt: the handshake completes, the server
        closes without the confirmation byte, virsh reports "Unable to read
        TLS confirmation"); the daemon logs the client's address and that it
        sent no certificate.
        """
        proc = virsh_fails(tls_daemon.tls_uri(pki.anonymous_client_dir), "list", "--all")
        wait_for_log(tls_daemon, REFUSED_V4
                     + r".*(no client certificate|did not return a certificate)")
        assert_trace_errors(proc, "tls-no-client-cert.txt")

    def test_no_client_certificate_openssl(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        An OpenSSL client without a certificate gets no confirmation byte,
        and the daemon logs a refusal for exactly its address and port.
        """
        probe = tls_probe(LOCALHOST_V4, tls_daemon.port(), None, self.cacert(pki))
        assert not probe.confirmed, probe
        wait_for_log(tls_daemon, rf"TLS client 127\.0\.0\.1:{probe.local_port} refused: "
                     r".*(no client certificate|did not return a certificate)")

    def test_anonymous_readonly(self, pki: TestPKI) -> None:
        """
        With C{--tls-anonymous-readonly}, virsh without a client certificate
        gets in: C{list --all} works, while C{define} and C{start} fail with
        libvirt's "read only access" error (server-side, code 29); a client
        with a certificate keeps full access.
        """
        with running(TLSDaemon(pki.server_dir, "--tls-anonymous-readonly")) as daemon:
            name = unique("ro")
            path = write_guest(daemon, name)
            virsh_ok(daemon.uri, "define", path)
            anon = daemon.tls_uri(pki.anonymous_client_dir)
            assert virsh_ok(anon, "list", "--all") == virsh_ok(daemon.uri, "list", "--all")
            wait_for_log(daemon, r"TLS client 127\.0\.0\.1:\d+ accepted \(DN '', "
                         r"anonymous read-only\)")
            started = virsh_fails(anon, "start", name)
            assert started.stderr == (
                f"error: Failed to start domain '{name}'\n"
                "error: operation forbidden: read only access prevents virDomainCreate\n")
            other = write_guest(daemon, unique("ro"))
            defined = virsh_fails(anon, "define", other)
            assert "error: Failed to define domain from " + other in defined.stderr
            assert ("error: operation forbidden: read only access prevents "
                    "virDomainDefineXML" in defined.stderr)
            assert "shut off" in virsh_ok(daemon.uri, "domstate", name)
            # A certificate still means full access on the same listener.
            full = daemon.tls_uri(pki.client_dir)
            virsh_ok(full, "start", name)
            virsh_ok(full, "destroy", name)
            virsh_ok(full, "undefine", name)

    def test_dn_not_allowed(self, pki: TestPKI) -> None:
        """
        With C{--tls-allowed-dn 'O=Research,CN=client*'}, a certificate with
        another DN is refused as libvirtd does (tls-dn-acl-rejected.txt:
        "Unable to read TLS confirmation"), the daemon logging the address,
        the DN and the allow-list reason; the matching client gets in.
        """
        with running(TLSDaemon(pki.server_dir, "--tls-allowed-dn", "O=Research,CN=client*")) as daemon:
            proc = virsh_fails(daemon.tls_uri(pki.other_dn_client_dir), "list", "--all")
            assert_trace_errors(proc, "tls-dn-acl-rejected.txt")
            wait_for_log(daemon, REFUSED_V4 + r"Client's Distinguished Name is not on the list "
                         r"of allowed clients \(DN " + re.escape(repr(OTHER_DN)) + r"\)")
            virsh_ok(daemon.tls_uri(pki.client_dir), "list", "--all")

    def test_dn_written_in_other_order(self, pki: TestPKI) -> None:
        """
        An allow-list entry with the RDNs reversed (C{CN=client1,O=Research})
        does not match GnuTLS's rendering C{O=Research,CN=client1}, as with
        libvirtd: virsh prints "Unable to read TLS confirmation".
        """
        with running(TLSDaemon(pki.server_dir, "--tls-allowed-dn", "CN=client1,O=Research")) as daemon:
            proc = virsh_fails(daemon.tls_uri(pki.client_dir), "list", "--all")
            assert_trace_errors(proc, "tls-dn-acl-rejected.txt")
            wait_for_log(daemon, REFUSED_V4 + r"Client's Distinguished Name.*"
                         + re.escape(repr(CLIENT_DN)))

    def test_expired_client_certificate(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        virsh refuses to present its own expired certificate; an OpenSSL
        client that presents it is refused without the confirmation byte,
        and the daemon logs its address, DN and "certificate has expired".
        """
        proc = virsh_fails(tls_daemon.tls_uri(pki.expired_client_dir), "list", "--all")
        assert "has expired" in proc.stderr
        probe = tls_probe(LOCALHOST_V4, tls_daemon.port(), pki.expired_client_dir,
                          self.cacert(pki))
        assert not probe.confirmed, probe
        wait_for_log(tls_daemon, rf"TLS client 127\.0\.0\.1:{probe.local_port} refused: "
                     rf".*certificate has expired.*{re.escape(repr(CLIENT_DN))}")

    def test_revoked_client_certificate(self, tls_daemon: TLSDaemon, pki: TestPKI) -> None:
        """
        virsh with a certificate listed in the daemon's C{cacrl.pem} is
        refused as libvirtd refuses it: the handshake completes and the
        server closes without the confirmation byte, so virsh prints the
        same two lines as for a DN refused by the allow-list (libvirtd
        checks revocation and the DN in one place after the handshake,
        tls-dn-acl-rejected.txt).  The daemon logs the address, DN and
        "certificate revoked".
        """
        proc = virsh(tls_daemon.tls_uri(pki.revoked_client_dir), "list", "--all")
        wait_for_log(tls_daemon, REFUSED_V4
                     + rf".*certificate revoked.*{re.escape(repr(CLIENT_DN))}")
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        assert_trace_errors(proc, "tls-dn-acl-rejected.txt")

    def test_revoked_client_certificate_openssl(self, tls_daemon: TLSDaemon,
                                                pki: TestPKI) -> None:
        """
        An OpenSSL client presenting the revoked certificate gets no
        confirmation byte, and the daemon logs its exact address and port,
        the DN and "certificate revoked".
        """
        probe = tls_probe(LOCALHOST_V4, tls_daemon.port(), pki.revoked_client_dir,
                          self.cacert(pki))
        assert not probe.confirmed, probe
        wait_for_log(tls_daemon, rf"TLS client 127\.0\.0\.1:{probe.local_port} refused: "
                     rf".*certificate revoked.*{re.escape(repr(CLIENT_DN))}")

    def test_hostname_mismatch(self, pki: TestPKI) -> None:
        """
        With a server certificate made for tlsbad.invalid, virsh connecting
        to localhost refuses the server with GnuTLS's hostname error and
        "Failed to verify peer's certificate" (tls-hostname-mismatch.txt);
        with C{no_verify=1} it only warns and lists the domains.
        """
        with running(TLSDaemon(pki.bad_name_server_dir)) as daemon:
            uri = daemon.tls_uri(pki.client_dir)
            proc = virsh_fails(uri, "list", "--all")
            lines = proc.stderr.splitlines()
            assert lines[-3].endswith(
                "warning : virNetTLSContextCheckCertificate:1086 : Certificate check failed "
                "Certificate [session] owner does not match the hostname localhost")
            assert lines[-2:] == [
                "error: failed to connect to the hypervisor",
                "error: authentication failed: Failed to verify peer's certificate"]
            assert BAD_HOSTNAME not in proc.stderr
            # The server accepted virsh; virsh hung up on it.
            wait_for_log(daemon, r"TLS client 127\.0\.0\.1:\d+ accepted")
            relaxed = virsh(daemon.tls_uri(pki.client_dir, query="no_verify=1"), "list", "--all")
            assert relaxed.returncode == 0, combined(relaxed)
            assert relaxed.stdout == virsh_ok(daemon.uri, "list", "--all")
            assert "owner does not match the hostname localhost" in relaxed.stderr


def _make_broken(pki: TestPKI, base: str, broken: Callable[[str], None]) -> str:
    """
    @return: a copy of the good server pki dir in C{base}, then broken.
    """
    directory = os.path.join(base, "pki")
    shutil.copytree(pki.server_dir, directory)
    broken(directory)
    return directory


class BrokenPKITests:
    """
    The daemon will not start with a broken C{--pki-dir}: exit status 1
    and one line naming the file and the problem, no traceback.
    """

    def assertRefusesToStart(self, pki_dir: str, *expected: str) -> str:
        """
        Start the daemon on C{pki_dir}; check it exits 1 with a single
        C{qemud: ...} line containing every C{expected} text.

        @return: that line.
        """
        failed = run_daemon_expecting_failure(
            "--listen-tls", f"127.0.0.1:{free_port()}", "--pki-dir", pki_dir)
        lines = failed.output.strip().splitlines()
        assert failed.returncode == 1, failed
        assert len(lines) == 1, failed
        assert lines[0].startswith("qemud: "), failed
        for text in expected:
            assert text in lines[0], failed
        assert "Traceback" not in failed.output + failed.log, failed
        return lines[0]

    def test_missing_server_key(self, pki: TestPKI, tmp_path: Any) -> None:
        """
        Without C{serverkey.pem} the daemon names that file and says it
        cannot be read.
        """
        directory = _make_broken(pki, str(tmp_path),
                                 lambda d: os.remove(os.path.join(d, "serverkey.pem")))
        line = self.assertRefusesToStart(directory, os.path.join(directory, "serverkey.pem"))
        assert "No such file or directory" in line

    def test_key_not_matching_certificate(self, pki: TestPKI, tmp_path: Any) -> None:
        """
        With another certificate's key the daemon names both files and says
        they do not match.
        """
        directory = _make_broken(pki, str(tmp_path), lambda d: shutil.copyfile(
            os.path.join(pki.bad_name_server_dir, "serverkey.pem"),
            os.path.join(d, "serverkey.pem")))
        line = self.assertRefusesToStart(directory, os.path.join(directory, "serverkey.pem"),
                                         os.path.join(directory, "servercert.pem"))
        assert "does not match" in line

    def test_expired_server_certificate(self, pki: TestPKI, tmp_path: Any) -> None:
        """
        With a server certificate made by the tooling with C{--days 0} (so
        already expired), the daemon names the certificate and says it has
        expired.
        """
        def expire(d: str) -> None:
            make_server_cert(d, pki.ca_dir, ["localhost"], ["127.0.0.1"], days=0, force=True)

        directory = _make_broken(pki, str(tmp_path), expire)
        line = self.assertRefusesToStart(directory, os.path.join(directory, "servercert.pem"))
        assert "expired" in line


class HandshakeStormTests:
    """
    Bad handshakes do not disturb a connected good client.
    """

    BAD_CLIENTS = 50

    def test_good_client_survives_50_bad_handshakes(self, pki: TestPKI) -> None:
        """
        A libvirt-python client stays connected over TLS and keeps calling
        getVersion and listAllDomains while 50 bad clients (no certificate,
        another CA, garbage bytes, a stalled handshake) come and go, ten at
        a time; every call succeeds with no long stall, every bad client is
        closed by the daemon without the confirmation byte and logged, and
        the daemon is alive afterwards.
        """
        require_libvirt_python()
        cacert = os.path.join(pki.ca_dir, "cacert.pem")
        with running(TLSDaemon(pki.server_dir, handshake_timeout=1.0)) as daemon:
            port = daemon.port()
            poller, ready, stop = start_poller(daemon.tls_uri(pki.client_dir), daemon.root)
            try:
                wait_until(lambda: os.path.exists(ready) or poller.poll() is not None, 30,
                           message="libvirt-python client connected")
                assert poller.poll() is None, poller.communicate(timeout=10)

                def bad(i: int) -> str:
                    kind = i % 4
                    if kind == 0:
                        probe = tls_probe(LOCALHOST_V4, port, None, cacert)
                        assert not probe.confirmed, probe
                    elif kind == 1:
                        probe = tls_probe(LOCALHOST_V4, port, pki.other_ca_client_dir, cacert)
                        assert not probe.confirmed, probe
                    elif kind == 2:
                        sent = raw_connection_closed_by_server(
                            LOCALHOST_V4, port, b"GET / HTTP/1.0\r\n\r\n" * 4)
                        assert b"\x01" not in sent[:1]
                    else:
                        started = time.monotonic()
                        sent = raw_connection_closed_by_server(LOCALHOST_V4, port, b"")
                        assert sent == b""
                        assert time.monotonic() - started >= 0.5
                    return "ok"

                with ThreadPoolExecutor(max_workers=10) as pool:
                    results = list(pool.map(bad, range(self.BAD_CLIENTS)))
                assert results == ["ok"] * self.BAD_CLIENTS
                open(stop, "w").close()
                out, err = poller.communicate(timeout=60)
            finally:
                if poller.poll() is None:
                    kill_pids([poller.pid])
                    poller.wait(timeout=10)
            assert poller.returncode == 0, err
            report = json.loads(out.strip().splitlines()[-1])
            assert report["errors"] == []
            assert report["alive"] == 1
            assert report["calls"] >= 20
            assert report["max_gap"] < 5.0, report
            assert daemon.alive()
            refused = [line for line in daemon.log_text().splitlines()
                       if re.search(r"TLS client 127\.0\.0\.1:\d+ (refused|dropped)", line)]
            assert len(refused) == self.BAD_CLIENTS, "\n".join(refused)
            virsh_ok(daemon.tls_uri(pki.client_dir), "list", "--all")
            # twistd re-raises the signal it stopped on, after a clean shutdown.
            assert daemon.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
            assert "Server Shut Down." in daemon.log_text()

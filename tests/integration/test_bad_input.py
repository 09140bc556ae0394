"""
Hostile and broken clients on raw sockets against a real daemon.

Each bad input gets an error reply or a closed connection for that client
only: a well-behaved client connected all along keeps working, virsh keeps
answering, and the daemon process stays alive.  Frames are built by hand
here (not with C{qemud.rpc}) so that the test does not share the daemon's
idea of the protocol.
"""

from __future__ import annotations

import random
import resource
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.daemon import (
    VIRSH,
    DaemonProcess,
    daemon_fixture,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
    require_tools,
    virsh,
)

REMOTE = 0x20008086
CALL, REPLY, MESSAGE = 0, 1, 2
OK, ERROR = 0, 1
PROC_CONNECT_OPEN = 1
PROC_CONNECT_GET_HOSTNAME = 59
PROC_AUTH_LIST = 66
PROC_CONNECT_LIST_ALL_DOMAINS = 273


def xdr_string(text: str) -> bytes:
    """An XDR string: length, bytes, zero padding to 4."""
    data = text.encode()
    return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)


def frame(proc: int, payload: bytes = b"", *, serial: int = 0, prog: int = REMOTE,
          vers: int = 1, mtype: int = CALL, status: int = OK) -> bytes:
    """
    One packet: length word (counting itself), 24-byte header, payload.
    """
    header = struct.pack(">IIiiIi", prog, vers, proc, mtype, serial, status)
    return struct.pack(">I", 4 + len(header) + len(payload)) + header + payload


def decode_error(payload: bytes) -> tuple[int, int, str | None]:
    """@return: (code, domain, message) of a C{remote_error}."""
    code, domain, present = struct.unpack(">iiI", payload[:12])
    message = None
    if present:
        (length,) = struct.unpack(">I", payload[12:16])
        message = payload[16:16 + length].decode()
    return code, domain, message


class RawClient:
    """
    A blocking raw-protocol client with a timeout on every read.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.serial = 0
        self._buffer = b""

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def call(self, proc: int, payload: bytes = b"", **kw: Any) -> int:
        """Send a call with the next serial; @return: the serial."""
        serial = self.serial
        self.serial += 1
        self.send(frame(proc, payload, serial=serial, **kw))
        return serial

    def read_frame(self) -> tuple[tuple[int, ...], bytes] | None:
        """
        @return: (header fields, payload) of the next packet, skipping
            keepalive; C{None} on EOF.
        @raise socket.timeout: when nothing comes in time.
        """
        while True:
            while len(self._buffer) < 4 or len(self._buffer) < struct.unpack(
                    ">I", self._buffer[:4])[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self._buffer += chunk
            (length,) = struct.unpack(">I", self._buffer[:4])
            packet, self._buffer = self._buffer[:length], self._buffer[length:]
            header = struct.unpack(">IIiiIi", packet[4:28])
            if header[0] == 0x6B656570:
                continue
            return header, packet[28:]

    def roundtrip(self, proc: int, payload: bytes = b"", **kw: Any) -> tuple[tuple[int, ...], bytes]:
        """Call and @return: the reply with the same serial."""
        serial = self.call(proc, payload, **kw)
        while True:
            got = self.read_frame()
            assert got is not None, "connection closed"
            if got[0][3] == REPLY and got[0][4] == serial:
                return got

    def open(self, uri: str = "qemu:///system") -> None:
        """AUTH_LIST and CONNECT_OPEN, both must succeed."""
        header, _ = self.roundtrip(PROC_AUTH_LIST)
        assert header[5] == OK
        header, payload = self.roundtrip(PROC_CONNECT_OPEN,
                                         struct.pack(">I", 1) + xdr_string(uri) +
                                         struct.pack(">I", 0))
        assert header[5] == OK, decode_error(payload)

    def hostname(self) -> str:
        """@return: CONNECT_GET_HOSTNAME."""
        header, payload = self.roundtrip(PROC_CONNECT_GET_HOSTNAME)
        assert header[5] == OK, decode_error(payload)
        (length,) = struct.unpack(">I", payload[:4])
        return payload[4:4 + length].decode()

    def closed_or_error(self, timeout: float = 10.0) -> str:
        """
        Wait for what the server does about bad input: C{"closed"} (EOF or
        reset) or C{"error"} (an error reply).

        @raise AssertionError: when it neither replies nor closes in time.
        """
        self.sock.settimeout(timeout)
        try:
            got = self.read_frame()
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        except TimeoutError:
            raise AssertionError("the server neither answered nor closed") from None
        if got is None:
            return "closed"
        assert got[0][5] == ERROR, got
        return "error"

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.fixture(scope="module")
def daemon(request: Any) -> Iterator[DaemonProcess]:
    """One daemon for the module, started with a generous fd limit."""
    require_tools(VIRSH)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield from daemon_fixture(request)


@pytest.fixture
def witness(daemon: DaemonProcess) -> Iterator[RawClient]:
    """A well-behaved client connected for the whole test."""
    client = RawClient(daemon.socket)
    client.open()
    assert client.hostname() == socket.gethostname()
    yield client
    client.close()


def still_fine(daemon: DaemonProcess, witness: RawClient) -> None:
    """The witness, a new virsh and the daemon process are all fine."""
    assert witness.hostname() == socket.gethostname()
    assert daemon.alive()
    proc = virsh(daemon.uri, "list", "--all", timeout=15)
    assert proc.returncode == 0, proc.stderr
    log = daemon.log_text()
    assert "Unhandled Error" not in log and "Traceback" not in log, daemon.log_tail(80)


class MalformedFrameTests:
    """
    Broken framing closes (or errors) that one connection only.
    """

    @pytest.mark.parametrize("data", [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(b"\xff\xff\xff\xff" + b"\0" * 60, id="length-2**32-1"),
        pytest.param(b"\x00\x00\x00\x08" + b"\0" * 60, id="length-8"),
        pytest.param(b"\x00\x00\x00\x00" + b"\0" * 60, id="length-0"),
        pytest.param(b"\x00\x00\x00\x1b" + b"\0" * 60, id="length-27"),
        pytest.param(struct.pack(">I", 32 * 1024 * 1024 + 5) + b"\0" * 60, id="length-over-max"),
    ])
    def test_bad_length(self, daemon: DaemonProcess, witness: RawClient, data: bytes) -> None:
        """
        A length word that is absurd (garbage, 2^32-1, below 28, above
        32 MiB + 4) gets an error or a closed connection.
        """
        bad = RawClient(daemon.socket)
        try:
            try:
                bad.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert bad.closed_or_error() in ("closed", "error")
        finally:
            bad.close()
        still_fine(daemon, witness)

    def test_garbage_frames_after_open(self, daemon: DaemonProcess,
                                       witness: RawClient) -> None:
        """
        Correctly framed garbage (random header and payload) from a client
        that opened the connection properly: error replies, dropped packets
        or a closed connection, never a hang; if the connection stays open,
        a following good call still gets its answer.
        """
        rng = random.Random(7)
        bad = RawClient(daemon.socket)
        try:
            bad.open()
            for _ in range(8):
                body = rng.randbytes(rng.randrange(24, 600))
                bad.send(struct.pack(">I", 4 + len(body)) + body)
            try:
                serial = bad.call(PROC_CONNECT_GET_HOSTNAME)
                while True:
                    got = bad.read_frame()
                    if got is None or (got[0][3] == REPLY and got[0][4] == serial
                                       and got[0][0] == REMOTE
                                       and got[0][2] == PROC_CONNECT_GET_HOSTNAME):
                        break
            except (ConnectionResetError, BrokenPipeError):
                got = None
            except TimeoutError:
                raise AssertionError("no answer and no close after garbage frames") from None
            if got is not None:
                assert got[0][5] == OK
        finally:
            bad.close()
        still_fine(daemon, witness)

    def test_truncated_then_eof(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        A frame cut short, then the client's end closed: the daemon drops
        the connection.
        """
        bad = RawClient(daemon.socket)
        try:
            whole = frame(PROC_AUTH_LIST)
            bad.send(whole[:17])
            bad.sock.shutdown(socket.SHUT_WR)
            assert bad.closed_or_error() == "closed"
        finally:
            bad.close()
        still_fine(daemon, witness)

    def test_ten_mib_random(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        10 MiB of random bytes: that connection ends (or gets errors), the
        rest of the daemon does not notice.
        """
        rng = random.Random(20261126)
        data = rng.randbytes(10 * 1024 * 1024)
        bad = RawClient(daemon.socket, timeout=20)

        def pump() -> None:
            try:
                bad.sock.sendall(data)
            except OSError:
                pass

        sender = threading.Thread(target=pump, daemon=True)
        sender.start()
        try:
            assert bad.closed_or_error(timeout=20) in ("closed", "error")
        finally:
            bad.close()
            sender.join(timeout=20)
        still_fine(daemon, witness)


class ProtocolMisuseTests:
    """
    Well-framed but wrong messages get error replies and the connection
    stays usable.
    """

    def test_unknown_program(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        A call to an unknown program gets REPLY/ERROR echoing prog and
        serial (code 39 RPC, or 3 NO_SUPPORT); the connection still works.
        """
        client = RawClient(daemon.socket)
        try:
            client.open()
            header, payload = client.roundtrip(7, prog=0x12345678)
            assert header[0] == 0x12345678 and header[5] == ERROR
            code, _, message = decode_error(payload)
            assert code in (3, 39), (code, message)
            assert client.hostname() == socket.gethostname()
        finally:
            client.close()
        still_fine(daemon, witness)

    def test_unknown_procedure(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        An unknown procedure number gets an error reply (NO_SUPPORT or RPC).
        """
        client = RawClient(daemon.socket)
        try:
            client.open()
            for proc in (9999, 0, -5, 100000):
                header, payload = client.roundtrip(proc)
                assert header[2] == proc and header[5] == ERROR
                assert decode_error(payload)[0] in (3, 39)
            assert client.hostname() == socket.gethostname()
        finally:
            client.close()
        still_fine(daemon, witness)

    def test_connect_open_twice(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        A second CONNECT_OPEN: code 1 "connection already open"; the first
        stays open.
        """
        client = RawClient(daemon.socket)
        try:
            client.open()
            header, payload = client.roundtrip(
                PROC_CONNECT_OPEN, struct.pack(">I", 1) + xdr_string("qemu:///system") +
                struct.pack(">I", 0))
            assert header[5] == ERROR
            code, _, message = decode_error(payload)
            assert code == 1 and message is not None and "connection already open" in message
            assert client.hostname() == socket.gethostname()
        finally:
            client.close()
        still_fine(daemon, witness)

    def test_reply_from_client_ignored(self, daemon: DaemonProcess,
                                       witness: RawClient) -> None:
        """
        REPLY and non-keepalive MESSAGE packets sent by a client are dropped
        without an answer; the next call's reply is the next packet.
        """
        client = RawClient(daemon.socket)
        try:
            client.open()
            client.send(frame(PROC_CONNECT_GET_HOSTNAME, serial=77, mtype=REPLY))
            client.send(frame(PROC_CONNECT_GET_HOSTNAME, serial=78, mtype=MESSAGE))
            serial = client.call(PROC_CONNECT_GET_HOSTNAME)
            got = client.read_frame()
            assert got is not None
            assert got[0][3] == REPLY and got[0][4] == serial and got[0][5] == OK
        finally:
            client.close()
        still_fine(daemon, witness)

    def test_call_with_error_status(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        A CALL whose status is not OK gets an error reply (or a close).
        """
        client = RawClient(daemon.socket)
        try:
            client.open()
            client.send(frame(PROC_CONNECT_GET_HOSTNAME, serial=5, status=ERROR))
            assert client.closed_or_error() in ("closed", "error")
        finally:
            client.close()
        still_fine(daemon, witness)

    def test_calls_before_open(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        A call other than AUTH_LIST/CONNECT_OPEN before CONNECT_OPEN gets an
        error reply, not a crash.
        """
        client = RawClient(daemon.socket)
        try:
            header, payload = client.roundtrip(PROC_CONNECT_LIST_ALL_DOMAINS,
                                               struct.pack(">iI", 1, 0))
            assert header[5] == ERROR, "list before open succeeded"
        finally:
            client.close()
        still_fine(daemon, witness)

    def test_truncated_payload(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        A well-framed CONNECT_OPEN whose payload is cut short gets an error
        reply (or a close), never a hang.
        """
        client = RawClient(daemon.socket)
        try:
            client.roundtrip(PROC_AUTH_LIST)
            client.send(frame(PROC_CONNECT_OPEN, struct.pack(">II", 1, 1000) + b"abc", serial=9))
            assert client.closed_or_error() in ("closed", "error")
        finally:
            client.close()
        still_fine(daemon, witness)


class ManyClientsTests:
    """
    Idle and stalled clients do not hold up the others.
    """

    def test_thousand_idle_connections(self, daemon: DaemonProcess,
                                       witness: RawClient) -> None:
        """
        With 1000 idle connections open, virsh list --all answers in
        under 5 seconds.
        """
        idle: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 60
            while len(idle) < 1000:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(daemon.socket)
                except BlockingIOError:
                    # The listen backlog is full: let the daemon accept.
                    s.close()
                    assert time.monotonic() < deadline, f"only {len(idle)} connections"
                    time.sleep(0.01)
                    continue
                idle.append(s)
            started = time.monotonic()
            proc = virsh(daemon.uri, "list", "--all", timeout=30)
            elapsed = time.monotonic() - started
            assert proc.returncode == 0, proc.stderr
            assert elapsed < 5, f"virsh list took {elapsed:.1f} s"
            readable, _, _ = select.select(idle[:50], [], [], 0)
            for s in readable:
                assert s.recv(1, socket.MSG_PEEK) != b"", "an idle client was dropped"
        finally:
            for s in idle:
                s.close()
        still_fine(daemon, witness)

    def test_half_frames_stall(self, daemon: DaemonProcess, witness: RawClient) -> None:
        """
        50 clients that send half a frame and stall do not delay virsh or
        the witness.
        """
        stalled: list[RawClient] = []
        try:
            for i in range(50):
                client = RawClient(daemon.socket)
                if i % 2:
                    client.open()
                client.send(frame(PROC_CONNECT_GET_HOSTNAME, serial=99)[:14])
                stalled.append(client)
            started = time.monotonic()
            assert witness.hostname() == socket.gethostname()
            proc = virsh(daemon.uri, "list", "--all", timeout=30)
            assert proc.returncode == 0, proc.stderr
            assert time.monotonic() - started < 5
            # Finishing a stalled frame still gets its answer.
            stalled[1].send(frame(PROC_CONNECT_GET_HOSTNAME, serial=99)[14:])
            got = stalled[1].read_frame()
            assert got is not None and got[0][4] == 99 and got[0][5] == OK
        finally:
            for client in stalled:
                client.close()
        still_fine(daemon, witness)

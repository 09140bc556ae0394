"""
Helpers for the fault-injection and socket-fuzzing tests
(L{tests.integration.test_faults}, L{tests.integration.test_fuzz_socket})
and the long fuzz run (C{benchmarks/fuzz_socket.py}).

Plain functions and classes (no pytest needed), so the benchmark can import
them too:

 - L{RPCClient}: a small blocking client of libvirt's remote protocol over
   a UNIX socket, with timeouts; it keeps the event MESSAGEs it reads;
 - L{domain_xml}: the no-OS KVM guest with a fixed UUID (so it can be
   redefined);
 - L{config_dir_problems}, L{log_problems}, L{qemu_guests_below},
   L{status_pids}: what the fault tests check after each fault;
 - L{TmpfsMount}: a small tmpfs, unmounted on cleanup;
 - L{FrameCorpus}, L{Mutator}, L{FuzzRun}: the socket fuzzer.

The daemon itself is run with L{tests.integration.daemon.DaemonProcess}.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import socket
import struct
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from qemud.domain.xml import parse_domain_xml
from qemud.errors import QemudError
from qemud.rpc import remote
from qemud.rpc.errors import RemoteError, decode_error
from qemud.rpc.framing import (
    CALL,
    ERROR,
    MESSAGE,
    OK,
    REPLY,
    Header,
    MessageDecoder,
    encode_message,
)
from qemud.rpc.remote import PROC, PROCEDURES
from qemud.rpc.xdr import (
    VOID,
    CharArray,
    Enum,
    Opaque,
    Optional,
    String,
    Struct,
    Union,
    VarArray,
    VarCharArray,
    VarOpaque,
    WireError,
    XDRType,
    _Bool,
    _Numeric,
)
from tests.integration.daemon import pid_alive, qemu_pids_below
from tests.integration.guests import noos_guest_domain_xml

# libvirt error codes the tests look for
ERR_OPERATION_FAILED = 9
ERR_SYSTEM_ERROR = 38
ERR_OPERATION_INVALID = 55
ERR_OPERATION_TIMEOUT = 68

# virDomainState
STATE_RUNNING = 1
STATE_PAUSED = 3
STATE_SHUTOFF = 5

# virDomainEventType / details used here
EVENT_STOPPED = 5
STOPPED_CRASHED = 2
STOPPED_FAILED = 5


class RPCTimeout(Exception):
    """No (complete) reply within the time allowed."""


class RPCClient:
    """
    A blocking client of the REMOTE program over a UNIX socket.

    Calls are sent one at a time (or sent with L{send} and collected with
    L{wait_reply}); MESSAGE packets (events) read meanwhile are kept in
    L{events} as C{(proc, decoded body)}.

    @ivar events: the event messages received so far.
    """

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        """
        Connect (not yet open: see L{open}).

        @param path: the daemon's UNIX socket.
        @param timeout: the default seconds allowed for each reply.
        """
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._decoder = MessageDecoder()
        self._serial = 0
        self._replies: dict[int, tuple[Header, bytes]] = {}
        self.events: list[tuple[int, Any]] = []

    def open(self, uri: str = "qemu:///system") -> RPCClient:
        """
        Open the connection as virsh does (C{AUTH_LIST}, C{CONNECT_OPEN}).

        @return: C{self}.
        """
        self.call(PROC.AUTH_LIST)
        self.call(PROC.CONNECT_OPEN, (uri, 0))
        return self

    def close(self) -> None:
        """Close the socket (no C{CONNECT_CLOSE})."""
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, proc: int, args: Any = None) -> int:
        """
        Send one call without waiting.

        @return: its serial.
        """
        layout = PROCEDURES[proc].args
        payload = b"" if layout is None or layout is VOID else layout.encode(args)
        serial = self._serial
        self._serial += 1
        self.sock.sendall(encode_message(
            (remote.REMOTE_PROGRAM, remote.PROTOCOL_VERSION, proc, CALL, serial, OK), payload))
        return serial

    def wait_reply(self, serial: int, proc: int, timeout: float | None = None) -> Any:
        """
        Wait for the reply to C{serial}.

        @return: the decoded reply (C{None} for a void reply).
        @raise RemoteError: when the daemon answered with an error.
        @raise RPCTimeout: when no reply came in time.
        @raise ConnectionError: when the daemon closed the connection.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while serial not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RPCTimeout(f"no reply to {PROCEDURES[proc].name} (serial {serial})")
            self._read(left)
        header, payload = self._replies.pop(serial)
        if header.status == ERROR:
            raise decode_error(payload)
        layout = PROCEDURES[proc].ret
        if layout is None or layout is VOID:
            return None
        return layout.unpack(payload)

    def call(self, proc: int, args: Any = None, timeout: float | None = None) -> Any:
        """
        One call, waiting for its reply; see L{wait_reply}.
        """
        return self.wait_reply(self.send(proc, args), proc, timeout)

    def wait_event(self, predicate: Callable[[int, Any], bool], timeout: float) -> Any:
        """
        Wait (bounded) for an event message matching C{predicate(proc, body)}.

        @return: the body.
        @raise RPCTimeout: when none came in time.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for proc, body in self.events[seen:]:
                if predicate(proc, body):
                    return body
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RPCTimeout(f"no matching event within {timeout} s; got {self.events!r}")
            self._read(left)

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise ConnectionError("the daemon closed the connection")
        for header, payload in self._decoder.feed(data):
            if header.type == REPLY:
                self._replies[header.serial] = (header, payload)
            elif header.type == MESSAGE and header.prog == remote.REMOTE_PROGRAM:
                layout = PROCEDURES.get(header.proc)
                body: Any = payload
                if layout is not None and layout.args is not None:
                    try:
                        body = layout.args.unpack(payload)
                    except Exception:
                        body = payload
                self.events.append((header.proc, body))
            elif header.type == MESSAGE and header.prog == remote.KEEPALIVE_PROGRAM:
                if header.proc == remote.KEEPALIVE_PING:
                    self.sock.sendall(encode_message(
                        (remote.KEEPALIVE_PROGRAM, 1, remote.KEEPALIVE_PONG, MESSAGE, 0, OK),
                        b""))

    # -- the calls the tests use ------------------------------------------------

    def get_version(self, timeout: float | None = None) -> int:
        """@return: C{CONNECT_GET_VERSION}."""
        return int(self.call(PROC.CONNECT_GET_VERSION, timeout=timeout).hv_ver)

    def list_all(self) -> dict[str, Any]:
        """@return: name to C{remote_nonnull_domain} for every domain."""
        ret = self.call(PROC.CONNECT_LIST_ALL_DOMAINS, (1, 0))
        return {dom.name: dom for dom in ret.domains}

    def lookup(self, name: str) -> Any:
        """@return: the C{remote_nonnull_domain} of C{name}."""
        return self.call(PROC.DOMAIN_LOOKUP_BY_NAME, (name,)).dom

    def state(self, dom: Any) -> tuple[int, int]:
        """@return: C{(state, reason)}."""
        ret = self.call(PROC.DOMAIN_GET_STATE, (dom, 0))
        return int(ret.state), int(ret.reason)

    def states(self) -> dict[str, tuple[int, int, int]]:
        """
        @return: name to C{(state, reason, id)} for every domain listed
            (a domain gone between list and query is left out).
        """
        out = {}
        for name, dom in self.list_all().items():
            try:
                state, reason = self.state(dom)
            except RemoteError:
                continue
            out[name] = (state, reason, int(dom.id))
        return out

    def define(self, xml: str) -> Any:
        """@return: the defined domain."""
        return self.call(PROC.DOMAIN_DEFINE_XML, (xml,)).dom

    def subscribe_lifecycle(self) -> int:
        """@return: the callback id of a lifecycle subscription for all domains."""
        ret = self.call(PROC.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
                        (remote.EVENT_ID_LIFECYCLE, None))
        return int(ret.callbackID)


def domain_xml(name: str, uuid: str) -> str:
    """
    @return: the no-OS KVM guest's XML with a fixed UUID.
    """
    xml = noos_guest_domain_xml(name)
    return xml.replace("</name>", f"</name>\n  <uuid>{uuid}</uuid>", 1)


def new_uuid(rng: random.Random) -> str:
    """@return: a UUID drawn from C{rng} (reproducible)."""
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


# --------------------------------------------------------------------------- checks


def config_dir_problems(config_dir: str) -> list[str]:
    """
    Check a config directory after a crash and restart: every C{NAME.xml}
    parses and defines domain NAME; no temporary or other stray file is
    left.

    @return: one line per problem.
    """
    problems = []
    try:
        entries = sorted(os.listdir(config_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        path = os.path.join(config_dir, entry)
        if entry == "autostart" and os.path.isdir(path):
            continue
        if not entry.endswith(".xml") or entry.startswith("."):
            problems.append(f"stray file in the config dir: {entry}")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                domain = parse_domain_xml(f.read())
        except (OSError, UnicodeDecodeError, QemudError) as e:
            problems.append(f"{entry} does not parse: {e}")
            continue
        if domain.name != entry[:-4]:
            problems.append(f"{entry} defines domain {domain.name!r}")
    return problems


def status_pids(status_dir: str) -> dict[str, int]:
    """
    @return: domain name to QEMU pid, from the status files (JSON).
    """
    out = {}
    for path in glob.glob(os.path.join(status_dir, "*.xml")):
        try:
            with open(path, encoding="utf-8") as f:
                out[os.path.basename(path)[:-4]] = int(json.load(f)["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _guest_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return None
    for i, arg in enumerate(args[:-1]):
        if arg == b"-name":
            first = args[i + 1].decode(errors="replace").split(",", 1)[0]
            return first[6:] if first.startswith("guest=") else first
    return None


def qemu_guests_below(root: str) -> dict[int, str]:
    """
    @return: pid to guest name of every live QEMU belonging to C{root}.
    """
    out = {}
    for pid in qemu_pids_below(root):
        if pid_alive(pid):
            name = _guest_name(pid)
            if name is not None:
                out[pid] = name
    return out


_BAD_LOG = re.compile(r"Unhandled Error|Unhandled error|Traceback \(most recent call last\)")


def log_files(root: str) -> list[str]:
    """@return: the daemon's log files (rotated ones included) and its stdout."""
    return sorted(glob.glob(os.path.join(root, "qemud.log*"))) + [
        os.path.join(root, "twistd.out")]


def _problems_in(lines: list[str], context: int) -> list[str]:
    found = []
    skip_to = -1
    for i, line in enumerate(lines):
        if i <= skip_to or not _BAD_LOG.search(line):
            continue
        found.append("\n".join(lines[max(0, i - 1):i + context]))
        skip_to = i + context
    return found


def log_problems(root: str, context: int = 12) -> list[str]:
    """
    Find unhandled errors and tracebacks in the daemon's logs.

    @return: one excerpt (the line before, the line and the lines after it)
        per occurrence.
    """
    found = []
    for path in log_files(root):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                found += _problems_in(f.read().splitlines(), context)
        except OSError:
            continue
    return found


class LogWatcher:
    """
    Read only what the daemon logged since the last look (files are
    followed by inode, so log rotation loses nothing) and report unhandled
    errors and tracebacks in it.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._offsets: dict[int, int] = {}

    def new_problems(self, context: int = 12) -> list[str]:
        """
        @return: excerpts of the problems logged since the last call.
        """
        found = []
        for path in log_files(self.root):
            try:
                with open(path, "rb") as f:
                    inode = os.fstat(f.fileno()).st_ino
                    f.seek(self._offsets.get(inode, 0))
                    data = f.read()
            except OSError:
                continue
            # only whole lines; the rest is read next time
            end = data.rfind(b"\n") + 1
            self._offsets[inode] = self._offsets.get(inode, 0) + end
            found += _problems_in(data[:end].decode("utf-8", "replace").splitlines(), context)
        return found


def log_text(root: str) -> str:
    """@return: every log file of the daemon, concatenated."""
    parts = []
    for path in log_files(root):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                parts.append(f.read())
        except OSError:
            pass
    return "".join(parts)


class TmpfsMount:
    """
    A tmpfs of a given size mounted on a directory (root only).

    @ivar path: the mount point.
    """

    def __init__(self, path: str, size: str = "256k") -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self) -> None:
        """
        @raise OSError: when the mount fails (with mount's message).
        """
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700",
                               "tmpfs", self.path], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise OSError(f"mount tmpfs on {self.path}: {proc.stderr.strip()}")
        self.mounted = True

    def unmount(self) -> None:
        """Unmount (lazily if busy); safe to call twice."""
        if not self.mounted:
            return
        proc = subprocess.run(["umount", self.path], capture_output=True, timeout=30)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", self.path], capture_output=True, timeout=30)
        self.mounted = False

    def fill(self, leave: int) -> str:
        """
        Fill the file system up to C{leave} free bytes (or fewer) with one file.

        @return: the filler's path.
        """
        filler = os.path.join(self.path, "filler.bin")
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * max(0, free - leave))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                pass
        return filler

    def free_bytes(self) -> int:
        """@return: bytes available."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


# --------------------------------------------------------------------------- fuzzing

#: Procedures a fuzz input must not call: they start guests or write or read
#: files at paths taken from the payload.
FUZZ_DENIED_PROCS = frozenset({
    PROC.DOMAIN_CREATE, PROC.DOMAIN_CREATE_XML, PROC.DOMAIN_CREATE_WITH_FLAGS,
    PROC.DOMAIN_RESTORE, PROC.DOMAIN_RESTORE_FLAGS, PROC.DOMAIN_SAVE, PROC.DOMAIN_SAVE_FLAGS,
    PROC.DOMAIN_MANAGED_SAVE, PROC.DOMAIN_CORE_DUMP, PROC.DOMAIN_CORE_DUMP_WITH_FORMAT,
    PROC.DOMAIN_CREATE_WITH_FILES, PROC.DOMAIN_CREATE_XML_WITH_FILES,
})

_LEN = struct.Struct(">I")


class FrameCorpus:
    """
    The client packets of the wire traces: whole frames to mutate, and the
    opening sequence of a real client (C{AUTH_LIST}, C{CONNECT_OPEN}) to
    put in front of them so that they reach the procedures past the open
    check.

    @ivar frames: every complete client packet (length word included),
        except those of denied procedures.
    @ivar payloads: the payloads (after the header) of those frames.
    @ivar opening: a valid opening sequence.
    """

    def __init__(self, files: Iterable[str]) -> None:
        from tests.rpc.traces import parse_trace

        self.frames: list[bytes] = []
        for path in files:
            for conn in parse_trace(path):
                for packet in conn.packets:
                    if packet.direction != "C->S" or not packet.complete:
                        continue
                    if len(packet.data) < 28 or proc_of(packet.data) in FUZZ_DENIED_PROCS:
                        continue
                    self.frames.append(packet.data)
        if not self.frames:
            raise ValueError("no client packets in the traces")
        self.payloads = [f[28:] for f in self.frames if len(f) > 28]
        self.opening = (
            encode_message((remote.REMOTE_PROGRAM, 1, PROC.AUTH_LIST, CALL, 0, OK), b"")
            + encode_message((remote.REMOTE_PROGRAM, 1, PROC.CONNECT_OPEN, CALL, 1, OK),
                             PROCEDURES[PROC.CONNECT_OPEN].args.encode(("qemu:///system", 0))))

    @classmethod
    def from_shared(cls) -> FrameCorpus:
        """@return: the corpus of C{shared/wire-traces} (skips without it)."""
        from tests.rpc.traces import trace_files

        return cls(trace_files())


def proc_of(frame: bytes) -> int | None:
    """@return: the procedure number of a REMOTE frame, else C{None}."""
    if len(frame) < 16:
        return None
    prog, _vers, proc = struct.unpack_from(">III", frame, 4)
    return proc if prog == remote.REMOTE_PROGRAM else None


def frames_of(data: bytes) -> list[bytes]:
    """
    Split a byte string into frames by their length words, as far as they
    are plausible.

    @return: the frames (the last may be partial).
    """
    out = []
    pos = 0
    while len(data) - pos >= 4:
        length = _LEN.unpack_from(data, pos)[0]
        if length < 28 or length > 1 << 20:
            out.append(data[pos:])
            return out
        out.append(data[pos:pos + length])
        pos += length
    if pos < len(data):
        out.append(data[pos:])
    return out


def denied(data: bytes) -> bool:
    """@return: whether some frame of C{data} calls a denied procedure."""
    return any(proc_of(f) in FUZZ_DENIED_PROCS for f in frames_of(data))


@dataclass
class FuzzInput:
    """
    One fuzz input: what is sent on one connection.

    @ivar kind: the mutation's name.
    @ivar data: the bytes.
    @ivar opened: whether a real opening sequence is sent first.
    @ivar chunked: whether the bytes are sent in small pieces.
    """

    kind: str
    data: bytes
    opened: bool
    chunked: bool = False

    def describe(self) -> str:
        """@return: a short printable description (hex of the first bytes)."""
        head = self.data[:96].hex()
        more = "..." if len(self.data) > 96 else ""
        return (f"{self.kind} opened={self.opened} chunked={self.chunked} "
                f"len={len(self.data)} data={head}{more}")


class Mutator:
    """
    Makes fuzz inputs from a L{FrameCorpus} with a seeded RNG.
    """

    #: The UUID of the domain the typed calls name.
    TARGET_UUID = "0f0f0f0f-1111-4222-8333-444455556666"

    @classmethod
    def target_xml_for(cls, name: str = "fuzz-target") -> str:
        """@return: the XML of the domain the typed calls name (define it first)."""
        return domain_xml(name, cls.TARGET_UUID)

    def __init__(self, corpus: FrameCorpus, rng: random.Random, *,
                 target_name: str = "fuzz-target",
                 target_uuid: str = TARGET_UUID) -> None:
        """
        @param corpus: the frames to mutate.
        @param rng: the random source.
        @param target_name: a domain the typed calls may name (and change).
        @param target_uuid: its UUID.
        """
        self.corpus = corpus
        self.rng = rng
        self.target_name = target_name
        self.target_uuid = uuidlib.UUID(target_uuid).bytes
        self.target_xml = domain_xml(target_name, target_uuid)
        self.typed_procs = sorted(
            n for n, p in PROCEDURES.items()
            if p.args is not None and not p.message and n not in FUZZ_DENIED_PROCS)
        self.kinds: list[tuple[str, Callable[[], bytes]]] = [
            ("random-bytes", self.random_bytes),
            ("random-header", self.random_header),
            ("bit-flip", self.bit_flip),
            ("byte-set", self.byte_set),
            ("truncate", self.truncate),
            ("length-word", self.length_word),
            ("header-field", self.header_field),
            ("field-swap", self.field_swap),
            ("random-proc", self.random_proc),
            ("splice", self.splice),
            ("payload-garbage", self.payload_garbage),
            ("xdr-length", self.xdr_length),
            ("multi-frame", self.multi_frame),
            ("typed-call", self.typed_call),
            ("xml-define", self.xml_define),
        ]

    def frame(self) -> bytes:
        """@return: a real frame, unchanged."""
        return self.rng.choice(self.corpus.frames)

    def next(self) -> FuzzInput:
        """
        @return: a new input (never one calling a denied procedure).
        """
        while True:
            kind, make = self.rng.choice(self.kinds)
            data = make()
            if not denied(data):
                break
        opened = self.rng.random() < 0.7
        return FuzzInput(kind, data, opened, chunked=self.rng.random() < 0.1)

    # -- mutations -------------------------------------------------------------

    def random_bytes(self) -> bytes:
        n = self.rng.choice((1, 3, 4, 8, 27, 28, 29, 64, 200, 1000))
        return self.rng.randbytes(n)

    def random_header(self) -> bytes:
        """A plausible length word and header with random fields."""
        body = self.rng.randbytes(self.rng.choice((0, 4, 8, 16, 40)))
        prog = self.rng.choice((remote.REMOTE_PROGRAM, remote.QEMU_PROGRAM,
                                remote.LXC_PROGRAM, remote.KEEPALIVE_PROGRAM,
                                remote.ADMIN_PROGRAM, self.rng.getrandbits(32)))
        fields = (prog, self.rng.choice((1, 0, 2, self.rng.getrandbits(32))),
                  self.rng.getrandbits(32), self.rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 255)),
                  self.rng.getrandbits(32), self.rng.choice((0, 1, 2, 3, 0x7fffffff)))
        return struct.pack(">IIIIIII", 28 + len(body), *fields) + body

    def bit_flip(self) -> bytes:
        data = bytearray(self.frame())
        for _ in range(self.rng.choice((1, 1, 2, 4, 8))):
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    def byte_set(self) -> bytes:
        data = bytearray(self.frame())
        for _ in range(self.rng.choice((1, 2, 3))):
            i = self.rng.randrange(len(data))
            data[i] = self.rng.choice((0, 0xff, 0x7f, 0x80, self.rng.getrandbits(8)))
        return bytes(data)

    def truncate(self) -> bytes:
        data = self.frame()
        cut = self.rng.randrange(1, len(data))
        if self.rng.random() < 0.5:
            return data[:cut]
        # keep the length word consistent with the shorter body
        data = data[:max(cut, 28)]
        return _LEN.pack(len(data)) + data[4:]

    def length_word(self) -> bytes:
        data = self.frame()
        length = _LEN.unpack_from(data)[0]
        new = self.rng.choice((0, 1, 3, 4, 27, 28, 29, length - 1, length + 1, length + 4,
                               length * 2, 0x7fffffff, 0xffffffff, 32 * 1024 * 1024 + 4,
                               32 * 1024 * 1024 + 5, self.rng.getrandbits(32)))
        return _LEN.pack(new & 0xffffffff) + data[4:]

    def header_field(self) -> bytes:
        data = bytearray(self.frame())
        index = self.rng.randrange(6)
        value = self.rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 0x7fffffff, 0x80000000, 0xffffffff,
                                 remote.REMOTE_PROGRAM, remote.KEEPALIVE_PROGRAM,
                                 self.rng.getrandbits(32)))
        struct.pack_into(">I", data, 4 + 4 * index, value)
        return bytes(data)

    def field_swap(self) -> bytes:
        """Swap two 4-byte words of the frame (header or payload)."""
        data = bytearray(self.frame())
        words = (len(data)) // 4
        i, j = self.rng.randrange(1, words), self.rng.randrange(1, words)
        a, b = data[4 * i:4 * i + 4], data[4 * j:4 * j + 4]
        data[4 * i:4 * i + 4], data[4 * j:4 * j + 4] = b, a
        return bytes(data)

    def random_proc(self) -> bytes:
        """A real payload under another (random) procedure number."""
        payload = self.rng.choice(self.corpus.payloads)
        proc = self.rng.choice((self.rng.randrange(0, 460), self.rng.randrange(1, 460),
                                self.rng.getrandbits(32)))
        return encode_message((remote.REMOTE_PROGRAM, 1, proc & 0x7fffffff, CALL,
                               self.rng.getrandbits(31), OK), payload)

    def splice(self) -> bytes:
        """The header and start of one frame with the rest of another."""
        a, b = self.frame(), self.frame()
        cut_a = self.rng.randrange(4, len(a) + 1)
        cut_b = self.rng.randrange(0, len(b) + 1)
        data = a[:cut_a] + b[cut_b:]
        if len(data) >= 4 and self.rng.random() < 0.7:
            data = _LEN.pack(len(data)) + data[4:]
        return data

    def payload_garbage(self) -> bytes:
        """A real header with a random payload."""
        frame = self.frame()
        body = self.rng.randbytes(self.rng.choice((1, 4, 8, 12, 16, 33, 100)))
        return _LEN.pack(28 + len(body)) + frame[4:28] + body

    def xdr_length(self) -> bytes:
        """A length-like word of the payload (string, array) set to an extreme."""
        data = bytearray(self.frame())
        if len(data) <= 28:
            return self.length_word()
        offsets = list(range(28, len(data) - 3, 4))
        i = self.rng.choice(offsets)
        struct.pack_into(">I", data, i, self.rng.choice(
            (0xffffffff, 0x7fffffff, 0x80000000, 4194305, 16385, 1 << 24, 3, 0)))
        return bytes(data)

    def multi_frame(self) -> bytes:
        """Several real frames back to back, one of them mutated."""
        frames = [self.frame() for _ in range(self.rng.randrange(2, 6))]
        i = self.rng.randrange(len(frames))
        frames[i] = self.rng.choice((self.bit_flip, self.truncate, self.length_word,
                                     self.header_field))()
        return b"".join(frames)


    # -- calls with well-formed XDR and odd values -----------------------------------

    _INTS = (0, 1, -1, 2, 3, 4, 7, 8, 16, 26, 27, 255, 1024, 0x7fffffff, -0x80000000)

    def _string(self) -> str:
        rng = self.rng
        return rng.choice((
            "", self.target_name, "fuzz-control", "no-such-domain", "a" * rng.choice((1, 255,
                                                                                      4096)),
            "../../etc/passwd", "x/y", ".hidden", "name\0nul", "\u00e9\u4e2d\U0001f600",
            "qemu:///system", "qemu:///session", "test:///default", "qemu+tcp://h/system",
            "<domain/>", self.target_xml, self._mutated_xml(), "%s%n%x", "\n\r\t",
            rng.randbytes(rng.randrange(0, 40)).decode("latin-1"),
        ))

    def value_for(self, layout: XDRType, depth: int = 0) -> Any:
        """
        @return: a random value that (usually) encodes as C{layout}.
        """
        rng = self.rng
        if isinstance(layout, _Numeric):
            if layout.fmt == "i":
                return rng.choice(self._INTS + (rng.getrandbits(31),))
            if layout.fmt == "I":
                return rng.choice((0, 1, 2, 3, 4, 8, 255, 0xffffffff, 0x80000000,
                                   rng.getrandbits(32)))
            if layout.fmt == "q":
                return rng.choice((0, 1, -1, 2**63 - 1, -2**63, rng.getrandbits(62)))
            if layout.fmt == "Q":
                return rng.choice((0, 1, 2**64 - 1, 2**63, rng.getrandbits(64)))
            return rng.choice((0.0, -1.0, 1e308, float("inf"), float("nan")))
        if isinstance(layout, _Bool):
            return rng.random() < 0.5
        if isinstance(layout, Enum):
            return rng.choice(sorted(layout.values))
        if isinstance(layout, String):
            return self._string()
        if isinstance(layout, Opaque):
            if layout.size == 16:
                return rng.choice((self.target_uuid, bytes(16), b"\xff" * 16,
                                   rng.randbytes(16)))
            return rng.randbytes(layout.size)
        if isinstance(layout, VarOpaque):
            return rng.randbytes(rng.randrange(0, 64))
        if isinstance(layout, (CharArray, VarCharArray)):
            size = layout.size if isinstance(layout, CharArray) else rng.randrange(0, 16)
            return rng.randbytes(size)
        if isinstance(layout, Optional):
            if depth > 4 or rng.random() < 0.3:
                return None
            return self.value_for(layout.type, depth + 1)
        if isinstance(layout, VarArray):
            n = 0 if depth > 4 else rng.choice((0, 1, 1, 2, 3))
            return [self.value_for(layout.type, depth + 1) for _ in range(n)]
        if isinstance(layout, Union):
            disc = rng.choice(sorted(layout.arms))
            return (disc, self.value_for(layout.arms[disc], depth + 1))
        if isinstance(layout, Struct):
            if layout.name == "remote_nonnull_domain" and rng.random() < 0.8:
                return (rng.choice((self.target_name, "fuzz-control", "x")),
                        rng.choice((self.target_uuid, rng.randbytes(16))),
                        rng.choice((-1, 0, 1, 0x7fffffff)))
            return tuple(self.value_for(t, depth + 1) for _, t in layout.fields)
        if layout is VOID:
            return None
        return None

    def typed_call(self) -> bytes:
        """A procedure the daemon knows, with well-formed but odd arguments."""
        for _ in range(20):
            proc = self.rng.choice(self.typed_procs)
            layout = PROCEDURES[proc].args
            assert layout is not None
            try:
                payload = b"" if layout is VOID else layout.encode(self.value_for(layout))
            except (WireError, UnicodeError, ValueError, TypeError):
                continue
            return encode_message((remote.REMOTE_PROGRAM, 1, proc, CALL,
                                   self.rng.getrandbits(31), OK), payload)
        return self.random_header()

    def _mutated_xml(self) -> str:
        rng = self.rng
        xml = self.target_xml
        for _ in range(rng.choice((1, 1, 2, 3))):
            if not xml:
                break
            i = rng.randrange(len(xml))
            j = min(len(xml), i + rng.randrange(1, 40))
            choice = rng.randrange(8)
            if choice == 0:
                xml = xml[:i] + xml[j:]                                  # delete a span
            elif choice == 1:
                xml = xml[:j] + xml[i:j] + xml[j:]                       # duplicate a span
            elif choice == 2:
                xml = xml[:i] + rng.choice(("<", ">", "&", "\"", "'", "]]>", "&#0;", "&amp;",
                                            "&x;", "\u00e9", "\x01", "<!--", "<?x?>")) + xml[i:]
            elif choice == 3:
                xml = re.sub(r">(\d+)<", lambda m: ">" + rng.choice((
                    "-1", "0", "99999999999999999999", "1e9", "0x10", " 1 ", "")) + "<",
                    xml, count=1)
            elif choice == 4:
                xml = re.sub(r"unit='[^']*'", rng.choice(("unit='EiB'", "unit='x'",
                                                          "unit=''", "unit='b'")), xml)
            elif choice == 5:
                extra = rng.choice((
                    "<vcpu>99999</vcpu>", "<memory unit='KiB'>0</memory>",
                    "<devices><disk type='file' device='disk'><source file='/dev/null'/>"
                    "<target dev='vda' bus='virtio'/></disk></devices>",
                    "<graphics type='vnc' port='-1' autoport='yes'/>",
                    "<interface type='user'><mac address='zz:zz'/></interface>",
                    "<on_crash>bogus</on_crash>", "<os><type>xen</type></os>",
                    "<name></name>", "<uuid>not-a-uuid</uuid>", "<a>" * 200 + "</a>" * 200))
                k = xml.rfind("</domain>")
                xml = xml[:k] + extra + xml[k:] if k >= 0 else xml + extra
            elif choice == 6:
                xml = ("<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'>"
                       "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
                       "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
                       + xml.replace("</name>", "&c;</name>", 1))
            else:
                xml = xml[:i]                                            # truncated
        return xml

    def xml_define(self) -> bytes:
        """C{DOMAIN_DEFINE_XML(_FLAGS)} with a mutated domain XML."""
        xml = self._mutated_xml()
        try:
            if self.rng.random() < 0.5:
                proc, payload = PROC.DOMAIN_DEFINE_XML, PROCEDURES[
                    PROC.DOMAIN_DEFINE_XML].args.encode((xml,))
            else:
                proc, payload = PROC.DOMAIN_DEFINE_XML_FLAGS, PROCEDURES[
                    PROC.DOMAIN_DEFINE_XML_FLAGS].args.encode((xml, self.rng.choice((0, 1, 2))))
        except (WireError, UnicodeError):
            return self.random_header()
        return encode_message((remote.REMOTE_PROGRAM, 1, proc, CALL, 7, OK), payload)


@dataclass
class Finding:
    """
    Something the fuzzer found.

    @ivar what: a short description.
    @ivar input: the input being sent when it was seen, if known.
    @ivar detail: log excerpt or error text.
    """

    what: str
    input: str
    detail: str = ""


@dataclass
class FuzzStats:
    """
    The outcome of a L{FuzzRun}.
    """

    inputs: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    replies: int = 0
    closed_by_daemon: int = 0
    control_calls: int = 0
    control_failures: list[str] = field(default_factory=list)
    control_max_latency: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """@return: inputs per second."""
        return self.inputs / self.seconds if self.seconds else 0.0


class ControlClient(threading.Thread):
    """
    A persistent connection that keeps making calls while the fuzzer runs;
    every call must succeed.
    """

    def __init__(self, path: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.interval = interval
        self.calls = 0
        self.failures: list[str] = []
        self.max_latency = 0.0
        self._stop_event = threading.Event()
        self.client = RPCClient(path, timeout=10).open()

    def run(self) -> None:
        calls: list[tuple[int, Any]] = [
            (PROC.CONNECT_GET_VERSION, None),
            (PROC.CONNECT_LIST_ALL_DOMAINS, (1, 0)),
            (PROC.CONNECT_GET_HOSTNAME, None),
            (PROC.DOMAIN_LOOKUP_BY_NAME, ("fuzz-control",)),
            (PROC.NODE_GET_INFO, None),
        ]
        i = 0
        while not self._stop_event.is_set():
            proc, args = calls[i % len(calls)]
            i += 1
            t0 = time.monotonic()
            try:
                self.client.call(proc, args, timeout=10)
            except Exception as e:
                self.failures.append(f"{PROCEDURES[proc].name}: {type(e).__name__}: {e}")
                if isinstance(e, (ConnectionError, OSError, RPCTimeout)):
                    return
            self.max_latency = max(self.max_latency, time.monotonic() - t0)
            self.calls += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        """Stop calling (bounded join) and close the connection."""
        self._stop_event.set()
        self.join(timeout=15)
        self.client.close()


class FuzzRun:
    """
    Send fuzz inputs to a daemon, one short connection each, while a
    L{ControlClient} keeps calling; watch the daemon's log for unhandled
    errors as it goes, and when one shows up, replay the recent inputs one
    by one to find the one that causes it.
    """

    def __init__(self, socket_path: str, root: str, corpus: FrameCorpus, seed: int,
                 *, alive: Callable[[], bool], reply_wait: float = 0.02,
                 check_every: int = 25) -> None:
        """
        @param socket_path: the daemon's read-write socket.
        @param root: the daemon's root (for its log files).
        @param corpus: the frames to mutate.
        @param seed: the RNG seed.
        @param alive: tells whether the daemon process still runs.
        @param reply_wait: seconds to wait for the daemon's answer per input.
        @param check_every: inputs between two looks at the log.
        """
        self.socket_path = socket_path
        self.root = root
        self.rng = random.Random(seed)
        self.mutator = Mutator(corpus, self.rng)
        self.opening = corpus.opening
        self.alive = alive
        self.reply_wait = reply_wait
        self.check_every = check_every
        self.stats = FuzzStats()
        self.log = LogWatcher(root)

    def run(self, seconds: float, max_inputs: int | None = None,
            progress: Callable[[FuzzStats], None] | None = None) -> FuzzStats:
        """
        Fuzz for C{seconds} (or C{max_inputs} inputs).

        @return: the statistics and findings.
        """
        stats = self.stats
        self.log.new_problems()  # start-up is not the fuzzer's doing
        control = ControlClient(self.socket_path)
        control.start()
        t0 = time.monotonic()
        deadline = t0 + seconds
        last_progress = t0
        recent: list[FuzzInput] = []
        try:
            while time.monotonic() < deadline:
                if max_inputs is not None and stats.inputs >= max_inputs:
                    break
                item = self.mutator.next()
                recent.append(item)
                self._send(item)
                stats.inputs += 1
                stats.kinds[item.kind] = stats.kinds.get(item.kind, 0) + 1
                if len(recent) >= self.check_every:
                    if not self._check(recent):
                        break
                    recent = []
                now = time.monotonic()
                if progress is not None and now - last_progress >= 10:
                    last_progress = now
                    stats.seconds = now - t0
                    progress(stats)
        finally:
            stats.seconds = time.monotonic() - t0
            control.stop()
            time.sleep(0.2)
            self._check(recent)
            stats.control_calls = control.calls
            stats.control_failures = control.failures
            stats.control_max_latency = control.max_latency
        return stats

    def _send(self, item: FuzzInput) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.socket_path)
            data = (self.opening if item.opened else b"") + item.data
            if item.chunked:
                pos = 0
                while pos < len(data):
                    n = self.rng.randrange(1, 16)
                    s.sendall(data[pos:pos + n])
                    pos += n
            else:
                s.sendall(data)
            s.settimeout(self.reply_wait)
            try:
                got = s.recv(65536)
                if got:
                    self.stats.replies += 1
                else:
                    self.stats.closed_by_daemon += 1
            except TimeoutError:
                pass
        except OSError:
            self.stats.closed_by_daemon += 1
        finally:
            s.close()

    def _check(self, recent: list[FuzzInput]) -> bool:
        """
        Look at the log; attribute new problems to an input by replaying.

        @return: whether the daemon is still alive.
        """
        if not self.alive():
            self.stats.findings.append(Finding(
                "the daemon died", "\n".join(i.describe() for i in recent[-5:]),
                log_text(self.root)[-3000:]))
            return False
        problems = self.log.new_problems()
        if not problems:
            return True
        culprit = None
        for item in recent:
            self._send(item)
            time.sleep(0.05)
            again = self.log.new_problems()
            if again:
                culprit = item
                problems = again
                break
        where = culprit.describe() if culprit is not None else (
            "not reproduced by replaying alone; one of:\n"
            + "\n".join(i.describe() for i in recent))
        for excerpt in problems:
            self.stats.findings.append(Finding("unhandled error in the daemon log", where,
                                               excerpt))
        return self.alive()

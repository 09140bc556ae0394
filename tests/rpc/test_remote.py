"""
Tests for L{qemud.rpc.remote}: the procedure table against the spec, the
committed frames in C{tests/data/wire/}, and every packet of the captured
traces decoded and re-encoded byte for byte.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from qemud.rpc import remote
from qemud.rpc.framing import CALL, ERROR, MESSAGE, REPLY, Header, MessageDecoder, encode_message
from qemud.rpc.remote import MESSAGES, PROC, PROCEDURES, RemoteErrorStruct
from qemud.rpc.xdr import VOID, XDRType
from tests.rpc.traces import parse_trace, trace_files

WIRE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "wire")


def wire_frame(name: str) -> bytes:
    """
    @param name: a file in C{tests/data/wire/} without C{.hex}.
    @return: the frame's bytes.
    """
    with open(os.path.join(WIRE_DIR, name + ".hex")) as f:
        return bytes.fromhex("".join(
            line for line in f.read().splitlines() if not line.startswith("#")))


def layout_for(header: Header) -> XDRType | None:
    """
    @param header: a packet header.
    @return: the layout of its payload, C{None} if unknown.
    """
    if header.prog == remote.KEEPALIVE_PROGRAM:
        return VOID
    if header.type == CALL:
        return PROCEDURES[header.proc].args
    if header.type == REPLY:
        return RemoteErrorStruct if header.status == ERROR else PROCEDURES[header.proc].ret
    if header.type == MESSAGE:
        return MESSAGES.get(header.proc)
    return None


# Spec §3.2: number, name, priority, read-only allowed
SPEC_TABLE = [
    (1, "CONNECT_OPEN", "high", True), (2, "CONNECT_CLOSE", "high", True),
    (3, "CONNECT_GET_TYPE", "high", True), (4, "CONNECT_GET_VERSION", "high", True),
    (6, "NODE_GET_INFO", "high", True), (7, "CONNECT_GET_CAPABILITIES", "low", True),
    (8, "DOMAIN_ATTACH_DEVICE", "low", False), (9, "DOMAIN_CREATE", "low", False),
    (10, "DOMAIN_CREATE_XML", "low", False), (11, "DOMAIN_DEFINE_XML", "high", False),
    (12, "DOMAIN_DESTROY", "high", False), (13, "DOMAIN_DETACH_DEVICE", "low", False),
    (14, "DOMAIN_GET_XML_DESC", "low", True), (15, "DOMAIN_GET_AUTOSTART", "high", True),
    (16, "DOMAIN_GET_INFO", "low", True), (19, "DOMAIN_GET_OS_TYPE", "high", True),
    (22, "DOMAIN_LOOKUP_BY_ID", "high", True), (23, "DOMAIN_LOOKUP_BY_NAME", "high", True),
    (24, "DOMAIN_LOOKUP_BY_UUID", "high", True), (27, "DOMAIN_REBOOT", "low", False),
    (28, "DOMAIN_RESUME", "low", False), (29, "DOMAIN_SET_AUTOSTART", "high", False),
    (33, "DOMAIN_SHUTDOWN", "low", False), (34, "DOMAIN_SUSPEND", "low", False),
    (35, "DOMAIN_UNDEFINE", "high", False), (54, "DOMAIN_RESTORE", "low", False),
    (55, "DOMAIN_SAVE", "low", False), (59, "CONNECT_GET_HOSTNAME", "high", True),
    (60, "CONNECT_SUPPORTS_FEATURE", "high", True), (66, "AUTH_LIST", "high", True),
    (70, "AUTH_POLKIT", "high", True), (105, "CONNECT_DOMAIN_EVENT_REGISTER", "high", True),
    (106, "CONNECT_DOMAIN_EVENT_DEREGISTER", "high", True), (110, "CONNECT_GET_URI", "high", True),
    (121, "DOMAIN_GET_SECURITY_LABEL", "high", True),
    (122, "NODE_GET_SECURITY_MODEL", "high", True), (150, "DOMAIN_IS_ACTIVE", "high", True),
    (151, "DOMAIN_IS_PERSISTENT", "high", True), (157, "CONNECT_GET_LIB_VERSION", "high", True),
    (160, "DOMAIN_ATTACH_DEVICE_FLAGS", "low", False),
    (161, "DOMAIN_DETACH_DEVICE_FLAGS", "low", False), (163, "DOMAIN_GET_JOB_INFO", "low", True),
    (167, "CONNECT_DOMAIN_EVENT_REGISTER_ANY", "high", True),
    (168, "CONNECT_DOMAIN_EVENT_DEREGISTER_ANY", "high", True),
    (174, "DOMAIN_UPDATE_DEVICE_FLAGS", "low", False), (182, "DOMAIN_MANAGED_SAVE", "low", False),
    (183, "DOMAIN_HAS_MANAGED_SAVE_IMAGE", "low", True),
    (184, "DOMAIN_MANAGED_SAVE_REMOVE", "low", False), (187, "DOMAIN_SNAPSHOT_NUM", "high", True),
    (196, "DOMAIN_CREATE_WITH_FLAGS", "low", False), (212, "DOMAIN_GET_STATE", "high", True),
    (231, "DOMAIN_UNDEFINE_FLAGS", "high", False), (232, "DOMAIN_SAVE_FLAGS", "low", False),
    (233, "DOMAIN_RESTORE_FLAGS", "low", False), (234, "DOMAIN_DESTROY_FLAGS", "high", False),
    (245, "DOMAIN_RESET", "low", False), (258, "DOMAIN_SHUTDOWN_FLAGS", "low", False),
    (273, "CONNECT_LIST_ALL_DOMAINS", "high", True),
    (316, "CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY", "high", True),
    (317, "CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY", "high", True),
    (350, "DOMAIN_DEFINE_XML_FLAGS", "high", False),
    (360, "CONNECT_REGISTER_CLOSE_CALLBACK", "high", True),
    (361, "CONNECT_UNREGISTER_CLOSE_CALLBACK", "high", True),
    (426, "DOMAIN_GET_MESSAGES", "low", True),
]


class ProcedureTableTests(SynchronousTestCase):
    """The procedure table as data."""

    def test_covers_one_to_443(self) -> None:
        """Every number 1..443 has a row and nothing beyond."""
        self.assertEqual(sorted(PROCEDURES), list(range(1, 444)))
        self.assertEqual(remote.PROC_MAX, 443)

    def test_spec_rows(self) -> None:
        """Names, priorities and read-only rules match spec §3.2."""
        for number, name, priority, ro_ok in SPEC_TABLE:
            proc = PROCEDURES[number]
            self.assertEqual((proc.name, proc.priority, proc.readonly_ok),
                             (name, priority, ro_ok), number)
            self.assertIsNotNone(proc.args, number)
            self.assertIsNotNone(proc.ret, number)

    def test_other_numbers_from_spec(self) -> None:
        """Legacy, extras and event numbers named in the spec are right."""
        expect = {
            51: "CONNECT_NUM_OF_DOMAINS", 37: "CONNECT_LIST_DOMAINS",
            25: "CONNECT_NUM_OF_DEFINED_DOMAINS", 21: "CONNECT_LIST_DEFINED_DOMAINS",
            107: "DOMAIN_EVENT_LIFECYCLE", 169: "DOMAIN_EVENT_REBOOT",
            268: "DOMAIN_EVENT_TRAY_CHANGE", 311: "DOMAIN_EVENT_DEVICE_REMOVED",
            318: "DOMAIN_EVENT_CALLBACK_LIFECYCLE", 319: "DOMAIN_EVENT_CALLBACK_REBOOT",
            328: "DOMAIN_EVENT_CALLBACK_TRAY_CHANGE", 333: "DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED",
            354: "DOMAIN_EVENT_CALLBACK_DEVICE_ADDED", 359:
            "DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION", 363: "DOMAIN_EVENT_CALLBACK_JOB_COMPLETED",
            202: "DOMAIN_IS_UPDATED", 18: "DOMAIN_GET_MAX_VCPUS", 200: "DOMAIN_GET_VCPUS_FLAGS",
            102: "NODE_GET_FREE_MEMORY", 149: "CONNECT_IS_SECURE", 159: "DOMAIN_MEMORY_STATS",
            344: "CONNECT_GET_ALL_DOMAIN_STATS",
        }
        for number, name in expect.items():
            self.assertEqual(PROCEDURES[number].name, name)
        for proc in remote.CALLBACK_EVENT_PROCS.values():
            self.assertTrue(PROCEDURES[proc].message, proc)
            self.assertTrue(PROCEDURES[proc].name.startswith("DOMAIN_EVENT_"), proc)
        for proc in remote.LEGACY_EVENT_PROCS.values():
            self.assertTrue(PROCEDURES[proc].message, proc)

    def test_api_names(self) -> None:
        """Public API names follow libvirt's capitalisation."""
        expect = {9: "virDomainCreate", 14: "virDomainGetXMLDesc", 19: "virDomainGetOSType",
                  24: "virDomainLookupByUUID", 55: "virDomainSave", 110: "virConnectGetURI",
                  183: "virDomainHasManagedSaveImage", 200: "virDomainGetVcpusFlags",
                  175: "virNWFilterLookupByName", 351: "virDomainGetIOThreadInfo",
                  294: "virDomainFSTrim", 262: "virDomainGetCPUStats",
                  253: "virDomainGetBlockIoTune", 261: "virDomainPMSuspendForDuration"}
        for number, name in expect.items():
            self.assertEqual(PROCEDURES[number].api_name, name)

    def test_proc_by_name(self) -> None:
        """PROC gives numbers by name and refuses unknown names."""
        self.assertEqual(PROC.DOMAIN_CREATE, 9)
        self.assertEqual(PROC.DOMAIN_FD_ASSOCIATE, 443)
        self.assertRaises(AttributeError, getattr, PROC, "NO_SUCH_THING")

    def test_programs(self) -> None:
        """Program numbers are libvirt's."""
        self.assertEqual((remote.REMOTE_PROGRAM, remote.QEMU_PROGRAM, remote.LXC_PROGRAM,
                          remote.KEEPALIVE_PROGRAM),
                         (0x20008086, 0x20008087, 0x00068000, 0x6B656570))
        self.assertEqual(remote.QEMU_PROCEDURES[1].api_name, "virDomainQemuMonitorCommand")


class CommittedFrameTests(SynchronousTestCase):
    """The frames kept in tests/data/wire/ (no shared/ needed)."""

    def _round_trip(self, name: str) -> object:
        frame = wire_frame(name)
        ((header, payload),) = MessageDecoder().feed(frame)
        layout = layout_for(header)
        assert layout is not None
        value = layout.unpack(payload)
        self.assertEqual(encode_message(header, layout.encode(value)), frame)
        return value

    def test_all_frames_round_trip(self) -> None:
        """Every committed frame decodes and re-encodes to the same bytes."""
        names = sorted(f[:-4] for f in os.listdir(WIRE_DIR) if f.endswith(".hex"))
        self.assertGreaterEqual(len(names), 8)
        for name in names:
            self._round_trip(name)

    def test_node_info_fields(self) -> None:
        """NODE_GET_INFO: model is 32 chars as ints, memory in KiB."""
        value = self._round_trip("node-get-info-reply")
        self.assertEqual(value.model.rstrip(b"\0"), b"x86_64")  # type: ignore[attr-defined]
        self.assertEqual(value.cpus, 2)  # type: ignore[attr-defined]

    def test_lifecycle_message_fields(self) -> None:
        """The 318 message: callbackID, then {dom, event, detail}."""
        value = self._round_trip("callback-lifecycle-message")
        self.assertEqual(value.msg.dom.name, "rt1")  # type: ignore[attr-defined]

    def test_security_model_nul_terminated(self) -> None:
        """NODE_GET_SECURITY_MODEL carries the C strings with their NUL."""
        value = self._round_trip("security-model-reply")
        self.assertEqual(value.model, b"none\0")  # type: ignore[attr-defined]


class TraceReplayTests(SynchronousTestCase):
    """Every packet libvirt sent or received in the captured traces."""

    def test_every_packet_round_trips(self) -> None:
        """Each complete packet decodes with our layouts and re-encodes identically."""
        count = 0
        for path in trace_files():
            for connection in parse_trace(path):
                for packet in connection.complete_packets():
                    ((header, payload),) = MessageDecoder().feed(packet.data)
                    layout = layout_for(header)
                    self.assertIsNotNone(layout, f"{path}: no layout for {header}")
                    assert layout is not None
                    value = layout.unpack(payload)
                    self.assertEqual(encode_message(header, layout.encode(value)), packet.data,
                                     f"{path}: {header}")
                    count += 1
        self.assertGreater(count, 2000)

    def test_whole_connections_through_one_decoder(self) -> None:
        """A connection's client bytes, concatenated, split back into its calls."""
        for path in ("list-all-empty.txt", "event-all-loop.txt", "save.txt"):
            for connection in parse_trace(path):
                sent = connection.client_bytes()
                out = MessageDecoder().feed(b"".join(sent))
                self.assertEqual(len(out), len(sent))

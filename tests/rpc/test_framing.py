"""
Tests for L{qemud.rpc.framing}: packets commented byte by byte, the stream
decoder fed in every possible split, and the length limits.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from qemud.rpc.framing import (
    CALL,
    MAX_LENGTH,
    MESSAGE,
    OK,
    REPLY,
    Header,
    MessageDecoder,
    WireError,
    decode_header,
    encode_message,
)

# The first packet of every connection: AUTH_LIST, serial 0 [list-all-empty.txt]
AUTH_LIST_CALL = bytes([
    0x00, 0x00, 0x00, 0x1c,  # length 28 (counts itself)
    0x20, 0x00, 0x80, 0x86,  # prog REMOTE
    0x00, 0x00, 0x00, 0x01,  # vers 1
    0x00, 0x00, 0x00, 0x42,  # proc 66 AUTH_LIST
    0x00, 0x00, 0x00, 0x00,  # type CALL
    0x00, 0x00, 0x00, 0x00,  # serial 0
    0x00, 0x00, 0x00, 0x00,  # status OK
])

# Its reply: types<> = [REMOTE_AUTH_NONE]
AUTH_LIST_REPLY = bytes([
    0x00, 0x00, 0x00, 0x24,  # length 36
    0x20, 0x00, 0x80, 0x86,  # prog REMOTE
    0x00, 0x00, 0x00, 0x01,  # vers 1
    0x00, 0x00, 0x00, 0x42,  # proc 66
    0x00, 0x00, 0x00, 0x01,  # type REPLY
    0x00, 0x00, 0x00, 0x00,  # serial 0
    0x00, 0x00, 0x00, 0x00,  # status OK
    0x00, 0x00, 0x00, 0x01,  # types: count 1
    0x00, 0x00, 0x00, 0x00,  # REMOTE_AUTH_NONE
])

# CONNECT_OPEN("qemu:///system", 0), serial 2
CONNECT_OPEN_CALL = bytes([
    0x00, 0x00, 0x00, 0x38,  # length 56
    0x20, 0x00, 0x80, 0x86,  # prog REMOTE
    0x00, 0x00, 0x00, 0x01,  # vers 1
    0x00, 0x00, 0x00, 0x01,  # proc 1 CONNECT_OPEN
    0x00, 0x00, 0x00, 0x00,  # type CALL
    0x00, 0x00, 0x00, 0x02,  # serial 2
    0x00, 0x00, 0x00, 0x00,  # status OK
    0x00, 0x00, 0x00, 0x01,  # name: present
    0x00, 0x00, 0x00, 0x0e,  # name: 14 bytes
]) + b"qemu:///system" + bytes([
    0x00, 0x00,              # padding to 4
    0x00, 0x00, 0x00, 0x00,  # flags 0
])

# Keepalive PING from the server: MESSAGE, serial 0, no payload
KEEPALIVE_PING = bytes([
    0x00, 0x00, 0x00, 0x1c,  # length 28
    0x6b, 0x65, 0x65, 0x70,  # prog KEEPALIVE ("keep")
    0x00, 0x00, 0x00, 0x01,  # vers 1
    0x00, 0x00, 0x00, 0x01,  # proc 1 PING
    0x00, 0x00, 0x00, 0x02,  # type MESSAGE
    0x00, 0x00, 0x00, 0x00,  # serial 0
    0x00, 0x00, 0x00, 0x00,  # status OK
])

STREAM = AUTH_LIST_CALL + CONNECT_OPEN_CALL + AUTH_LIST_REPLY + KEEPALIVE_PING
EXPECTED = [
    (Header(0x20008086, 1, 66, CALL, 0, OK), b""),
    (Header(0x20008086, 1, 1, CALL, 2, OK), CONNECT_OPEN_CALL[28:]),
    (Header(0x20008086, 1, 66, REPLY, 0, OK), b"\0\0\0\1\0\0\0\0"),
    (Header(0x6B656570, 1, 1, MESSAGE, 0, OK), b""),
]


class EncodeTests(SynchronousTestCase):
    """encode_message builds length + header + payload."""

    def test_empty_call(self) -> None:
        """An empty call is 28 bytes and its length word says 28."""
        self.assertEqual(encode_message(Header(0x20008086, 1, 66, CALL, 0, OK), b""),
                         AUTH_LIST_CALL)

    def test_reply_with_payload(self) -> None:
        """The length word counts itself, the header and the payload."""
        self.assertEqual(encode_message((0x20008086, 1, 66, REPLY, 0, OK), b"\0\0\0\1\0\0\0\0"),
                         AUTH_LIST_REPLY)

    def test_keepalive_ping(self) -> None:
        """A PING is a payload-less MESSAGE of the keepalive program."""
        self.assertEqual(encode_message((0x6B656570, 1, 1, MESSAGE, 0, OK), b""),
                         KEEPALIVE_PING)

    def test_oversized_message_refused(self) -> None:
        """A payload that would exceed 32 MiB + 4 is refused."""
        self.assertRaises(WireError, encode_message, (1, 1, 1, 0, 0, 0),
                          b"\0" * (MAX_LENGTH - 27))

    def test_bad_header_field_refused(self) -> None:
        """A negative serial cannot be encoded."""
        self.assertRaises(WireError, encode_message, (1, 1, 1, 0, -1, 0), b"")

    def test_decode_header(self) -> None:
        """decode_header reads the six fields after the length word."""
        self.assertEqual(decode_header(CONNECT_OPEN_CALL, 4), EXPECTED[1][0])
        self.assertRaises(WireError, decode_header, b"\0" * 10)


class MessageDecoderTests(SynchronousTestCase):
    """The stream decoder."""

    def test_whole_stream(self) -> None:
        """Several packets in one chunk all come out, in order."""
        self.assertEqual(MessageDecoder().feed(STREAM), EXPECTED)

    def test_split_at_every_boundary(self) -> None:
        """Splitting the stream in two at any byte gives the same packets."""
        for cut in range(len(STREAM) + 1):
            decoder = MessageDecoder()
            out = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:])
            self.assertEqual(out, EXPECTED, f"cut at {cut}")
            self.assertEqual(decoder.buffered, 0)

    def test_byte_by_byte(self) -> None:
        """Feeding one byte at a time gives the same packets."""
        decoder = MessageDecoder()
        out = []
        for i in range(len(STREAM)):
            out += decoder.feed(STREAM[i:i + 1])
        self.assertEqual(out, EXPECTED)

    def test_partial_packet_is_kept(self) -> None:
        """An incomplete packet yields nothing and waits for the rest."""
        decoder = MessageDecoder()
        self.assertEqual(decoder.feed(CONNECT_OPEN_CALL[:40]), [])
        self.assertEqual(decoder.buffered, 40)
        self.assertEqual(decoder.feed(CONNECT_OPEN_CALL[40:]), [EXPECTED[1]])

    def test_length_below_header_refused(self) -> None:
        """A length word below 28 is refused as soon as it is read."""
        for length in (0, 4, 27):
            self.assertRaises(WireError, MessageDecoder().feed, length.to_bytes(4, "big"))

    def test_length_above_maximum_refused_before_buffering(self) -> None:
        """A length of 32 MiB + 5 is refused with only its 4 bytes seen."""
        decoder = MessageDecoder()
        self.assertRaises(WireError, decoder.feed, (MAX_LENGTH + 1).to_bytes(4, "big"))
        self.assertEqual(decoder.buffered, 0)

    def test_length_all_ones_refused(self) -> None:
        """A length word of 2**32-1 is refused."""
        self.assertRaises(WireError, MessageDecoder().feed, b"\xff\xff\xff\xff")

    def test_maximum_length_accepted(self) -> None:
        """A length word of exactly 32 MiB + 4 is accepted (and waits for its body)."""
        decoder = MessageDecoder()
        self.assertEqual(decoder.feed(MAX_LENGTH.to_bytes(4, "big") + b"\0" * 24), [])

    def test_error_after_valid_packets(self) -> None:
        """Garbage after valid packets raises; the decoder then stays broken."""
        decoder = MessageDecoder()
        self.assertRaises(WireError, decoder.feed, AUTH_LIST_CALL + b"\0\0\0\1")
        self.assertRaises(WireError, decoder.feed, AUTH_LIST_CALL)

    def test_three_length_bytes_wait(self) -> None:
        """Fewer than 4 bytes are buffered without judgement."""
        decoder = MessageDecoder()
        self.assertEqual(decoder.feed(b"\xff\xff\xff"), [])
        self.assertEqual(decoder.buffered, 3)

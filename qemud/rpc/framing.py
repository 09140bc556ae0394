# -*- test-case-name: tests.rpc.test_framing -*-
"""
libvirt RPC packet framing: a 4-byte length word that counts itself, a
24-byte header, then the XDR payload (C{virnetprotocol.x}).

L{MessageDecoder} turns a byte stream into C{(Header, payload)} pairs and
checks every length word before buffering anything; L{encode_message}
builds one packet.

This module is pure (standard library only).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from qemud.rpc.xdr import WireError

__all__ = [
    "Header", "MessageDecoder", "encode_message", "WireError",
    "LEN_MAX", "HEADER_MAX", "MESSAGE_MAX", "PAYLOAD_MAX", "MIN_LENGTH", "MAX_LENGTH",
    "CALL", "REPLY", "MESSAGE", "STREAM", "CALL_WITH_FDS", "REPLY_WITH_FDS", "STREAM_HOLE",
    "OK", "ERROR", "CONTINUE",
]

# virnetprotocol.x limits
LEN_MAX = 4
HEADER_MAX = 24
MESSAGE_MAX = 32 * 1024 * 1024
PAYLOAD_MAX = MESSAGE_MAX - HEADER_MAX
MIN_LENGTH = LEN_MAX + HEADER_MAX
MAX_LENGTH = LEN_MAX + MESSAGE_MAX

# virNetMessageType
CALL = 0
REPLY = 1
MESSAGE = 2
STREAM = 3
CALL_WITH_FDS = 4
REPLY_WITH_FDS = 5
STREAM_HOLE = 6

# virNetMessageStatus
OK = 0
ERROR = 1
CONTINUE = 2

_LEN = struct.Struct(">I")
_HEADER = struct.Struct(">IIiiIi")
_PACKET_HEAD = struct.Struct(">IIIiiIi")


class Header(NamedTuple):
    """
    C{virNetMessageHeader}.

    @ivar prog: program number (REMOTE, QEMU, LXC, KEEPALIVE).
    @ivar vers: program version, always 1.
    @ivar proc: procedure number inside the program.
    @ivar type: message type (L{CALL}, L{REPLY}, L{MESSAGE}, ...).
    @ivar serial: the caller's request id.
    @ivar status: L{OK}, L{ERROR} or L{CONTINUE}.
    """

    prog: int
    vers: int
    proc: int
    type: int
    serial: int
    status: int


def encode_message(header: Header | tuple[int, int, int, int, int, int], payload: bytes) -> bytes:
    """
    Build one packet.

    @param header: the six header fields.
    @param payload: the XDR-encoded body.
    @return: length word, header and payload.
    @raise WireError: if the packet would exceed L{MAX_LENGTH} or a header
        field is out of range.
    """
    length = MIN_LENGTH + len(payload)
    if length > MAX_LENGTH:
        raise WireError(f"message of {length} bytes exceeds the maximum {MAX_LENGTH}")
    try:
        return _PACKET_HEAD.pack(length, *header) + payload
    except struct.error as e:
        raise WireError(f"bad header {header!r}: {e}") from e


def decode_header(buf: bytes, offset: int = 0) -> Header:
    """
    @param buf: bytes holding a 24-byte header at C{offset}.
    @param offset: where the header starts (after the length word).
    @return: the header.
    @raise WireError: if fewer than 24 bytes are available.
    """
    try:
        return Header._make(_HEADER.unpack_from(buf, offset))
    except struct.error as e:
        raise WireError(f"truncated header: {e}") from e


class MessageDecoder:
    """
    Split a byte stream into packets.

    Feed it whatever the transport delivered; it returns every packet
    completed so far and keeps the rest.  A length word below
    L{MIN_LENGTH} or above L{MAX_LENGTH} raises L{WireError} as soon as its
    four bytes are seen, before any of the body is buffered; after that the
    decoder stays broken and every further feed raises too.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: WireError | None = None

    @property
    def buffered(self) -> int:
        """
        @return: how many bytes of an incomplete packet are held.
        """
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[Header, bytes]]:
        """
        @param data: the next bytes of the stream.
        @return: the packets completed by them, in order, as
            C{(header, payload)}.
        @raise WireError: on an invalid length word.
        """
        if self._error is not None:
            raise self._error
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        out: list[tuple[Header, bytes]] = []
        pos = 0
        end = len(buf)
        unpack_len = _LEN.unpack_from
        unpack_header = _HEADER.unpack_from
        make = Header._make
        while end - pos >= 4:
            length = unpack_len(buf, pos)[0]
            if length < MIN_LENGTH or length > MAX_LENGTH:
                self._buf = bytearray()
                self._error = WireError(
                    f"packet length {length} outside [{MIN_LENGTH}, {MAX_LENGTH}]")
                raise self._error
            if end - pos < length:
                break
            out.append((make(unpack_header(buf, pos + 4)), bytes(buf[pos + MIN_LENGTH:pos + length])))
            pos += length
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < end:
            self._buf = bytearray(buf[pos:])
        return out

# -*- test-case-name: tests.qemu.test_hotplug -*-
"""
The save image format: a small header, the domain XML, then QEMU's raw
migration stream.

libvirt writes its own header (C{LibvirtQemudSave}, version, XML length,
flags) followed by the domain XML and the migration stream; qemud does the
same with its own magic, so that C{virsh restore} of a file written by
C{virsh save} through qemud knows which domain to start and whether it was
running::

    offset  size  field
    0       16    magic  b"QemudSaveImage\\n\\0"
    16      4     version (big endian), currently 1
    20      4     flags: bit 0 = the guest was running when saved
    24      4     length of the XML in bytes (UTF-8)
    28      4     data offset: where the migration stream starts
    32      ...   the XML, then zero padding up to the data offset
                  (a multiple of 4096), then the stream

This module is pure (standard library only).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from qemud.errors import OperationFailedError

MAGIC = b"QemudSaveImage\n\0"
VERSION = 1
FLAG_RUNNING = 1
_HEADER = struct.Struct(">16sIIII")
_ALIGN = 4096
MAX_XML = 16 * 1024 * 1024


@dataclass(frozen=True)
class SaveHeader:
    """
    What a save image says about itself.

    @ivar xml: the domain XML (the running definition when saved).
    @ivar running: whether the guest was running (not paused) when saved.
    @ivar data_offset: where the migration stream starts in the file.
    """

    xml: str
    running: bool
    data_offset: int


def encode_header(xml: str, running: bool) -> bytes:
    """
    @param xml: the domain XML.
    @param running: whether the guest ran when it was saved.
    @return: the header bytes, padded so that the stream starts page aligned.
    """
    body = xml.encode("utf-8")
    used = _HEADER.size + len(body)
    offset = (used + _ALIGN - 1) // _ALIGN * _ALIGN
    head = _HEADER.pack(MAGIC, VERSION, FLAG_RUNNING if running else 0, len(body), offset)
    return head + body + b"\0" * (offset - used)


def decode_header(data: bytes, path: str = "save image") -> SaveHeader:
    """
    @param data: the file's first bytes (at least the whole header and XML).
    @param path: the file name, for messages.
    @return: the header.
    @raise OperationFailedError: when C{data} is not a qemud save image.
    """
    if len(data) < _HEADER.size:
        raise OperationFailedError(f"failed to read qemu header of '{path}': file too short")
    magic, version, flags, length, offset = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise OperationFailedError(f"image magic is incorrect: '{path}' is not a save image")
    if version != VERSION:
        raise OperationFailedError(f"image version {version} of '{path}' is not supported")
    if length > MAX_XML or offset < _HEADER.size + length or len(data) < _HEADER.size + length:
        raise OperationFailedError(f"save image '{path}' has a corrupt header")
    try:
        xml = data[_HEADER.size:_HEADER.size + length].decode("utf-8")
    except UnicodeDecodeError as e:
        raise OperationFailedError(f"save image '{path}' has a corrupt header") from e
    return SaveHeader(xml=xml, running=bool(flags & FLAG_RUNNING), data_offset=offset)


def read_header(path: str) -> SaveHeader:
    """
    @param path: a save image.
    @return: its header.
    @raise OperationFailedError: the file cannot be read or is not a save image.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            if len(head) == _HEADER.size and head[:16] == MAGIC:
                length = _HEADER.unpack_from(head)[3]
                head += f.read(min(length, MAX_XML))
    except OSError as e:
        raise OperationFailedError(
            f"cannot open save image '{path}': {e.strerror or e}") from e
    return decode_header(head, path)


def open_stream(path: str) -> tuple[SaveHeader, int]:
    """
    Open a save image for restoring.

    @param path: the image.
    @return: the header and a descriptor (close-on-exec) positioned at the
        start of the migration stream; the caller closes it.
    @raise OperationFailedError: the file cannot be read or is not a save image.
    """
    header = read_header(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OperationFailedError(
            f"cannot open save image '{path}': {e.strerror or e}") from e
    os.lseek(fd, header.data_offset, os.SEEK_SET)
    return header, fd


def temp_path(path: str) -> str:
    """
    @param path: the final image path.
    @return: the temporary file a save writes before renaming it to C{path}
        (same directory, so the rename is atomic).
    """
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.qemud-partial")


def create_image(path: str, xml: str, running: bool) -> tuple[str, int]:
    """
    Create the temporary file of a save and write the header.

    @param path: the final image path.
    @param xml: the domain XML.
    @param running: whether the guest is running.
    @return: the temporary path and a write descriptor positioned at the
        stream offset.
    @raise OperationFailedError: the file cannot be created or written
        (nothing is left behind).
    """
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise OperationFailedError(
            f"failed to create '{path}': {e.strerror or e}") from e
    try:
        data = encode_header(xml, running)
        while data:
            data = data[os.write(fd, data):]
    except OSError as e:
        os.close(fd)
        discard(tmp)
        raise OperationFailedError(f"failed to write '{path}': {e.strerror or e}") from e
    return tmp, fd


def commit_image(tmp: str, path: str) -> None:
    """
    Make a completed save visible: fsync the temporary file, rename it to its
    final name, fsync the directory.

    @raise OperationFailedError: when that fails (the temporary file is removed).
    """
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dirfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except OSError as e:
        discard(tmp)
        raise OperationFailedError(f"failed to write '{path}': {e.strerror or e}") from e


def discard(tmp: str) -> None:
    """
    Remove a partial image; a missing file is fine.
    """
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass

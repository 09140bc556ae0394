# -*- test-case-name: tests.rpc.test_errors -*-
"""
Errors on the wire.

L{WireError}: the peer's bytes do not fit the protocol (the connection is
closed).  C{remote_error}: the payload of a failed reply; L{error_to_wire}
builds it from a L{qemud.errors.QemudError} the way libvirtd fills it
(message, level 2, C{str1} = the message format, C{str2} = the detail,
C{int1 = int2 = -1}, C{dom}/C{net} absent), L{RemoteError} is what a client
raises when it receives one, and L{RemoteError.to_qemud_error} maps it back
onto the daemon's exception tree by error code.

This module is pure (standard library only).
"""

from __future__ import annotations

from typing import Any

from qemud import errors as _errors
from qemud.errors import LEVEL_ERROR, QemudError
from qemud.rpc.remote import RemoteErrorStruct
from qemud.rpc.xdr import WireError

__all__ = ["WireError", "RemoteError", "RemoteErrorStruct", "error_to_wire", "encode_error",
           "decode_error", "ERROR_CLASSES"]


def _classes() -> dict[int, type[QemudError]]:
    out: dict[int, type[QemudError]] = {}
    for obj in vars(_errors).values():
        if isinstance(obj, type) and issubclass(obj, QemudError) and obj is not QemudError:
            # Keep the most general class per code (ConfigUnsupported is its own code).
            if obj.code not in out or issubclass(out[obj.code], obj):
                out[obj.code] = obj
    return out


ERROR_CLASSES: dict[int, type[QemudError]] = _classes()
"""The L{QemudError} subclass for each libvirt error code qemud uses."""


def error_to_wire(error: QemudError) -> Any:
    """
    @param error: the error to report.
    @return: a C{remote_error} value.
    """
    return RemoteErrorStruct(
        code=error.code, domain=error.domain, message=error.message, level=LEVEL_ERROR,
        dom=None, str1=error.prefix, str2=error.detail, str3=None, int1=-1, int2=-1, net=None)


def encode_error(error: QemudError) -> bytes:
    """
    @param error: the error to report.
    @return: the XDR C{remote_error} payload of an error reply.
    """
    return RemoteErrorStruct.encode(error_to_wire(error))


class RemoteError(Exception):
    """
    A failed call, as reported by the server (a decoded C{remote_error}).

    @ivar code: libvirt's C{virErrorNumber}.
    @ivar domain: libvirt's C{virErrorDomain}.
    @ivar message: the full text (C{None} if the server sent none).
    @ivar level: the C{virErrorLevel}.
    @ivar str1: the message format, if sent.
    @ivar str2: the first detail, if sent.
    @ivar str3: the second detail, if sent.
    @ivar int1: extra number, usually -1.
    @ivar int2: extra number, usually -1.
    """

    def __init__(self, code: int, domain: int, message: str | None, level: int = LEVEL_ERROR,
                 str1: str | None = None, str2: str | None = None, str3: str | None = None,
                 int1: int = -1, int2: int = -1) -> None:
        super().__init__(code, domain, message)
        self.code = code
        self.domain = domain
        self.message = message
        self.level = level
        self.str1 = str1
        self.str2 = str2
        self.str3 = str3
        self.int1 = int1
        self.int2 = int2

    def __str__(self) -> str:
        return self.message if self.message is not None else f"libvirt error code {self.code}"

    def __repr__(self) -> str:
        return f"RemoteError(code={self.code}, domain={self.domain}, message={self.message!r})"

    @classmethod
    def from_wire(cls, value: Any) -> RemoteError:
        """
        @param value: a decoded C{remote_error}.
        @return: the matching L{RemoteError}.
        """
        return cls(value.code, value.domain, value.message, value.level, value.str1,
                   value.str2, value.str3, value.int1, value.int2)

    def to_qemud_error(self) -> QemudError:
        """
        @return: the L{QemudError} subclass for C{code} (L{QemudError} itself
            for unknown codes), carrying the server's detail when it sent one.
        """
        cls = ERROR_CLASSES.get(self.code, QemudError)
        detail = self.str2 if self.str2 is not None else (self.message or "")
        return cls(detail)


def decode_error(payload: bytes) -> RemoteError:
    """
    @param payload: the body of a reply with status ERROR.
    @return: the error it carries.
    @raise WireError: if the payload is not a C{remote_error}.
    """
    value, _ = RemoteErrorStruct.decode(payload, 0)
    return RemoteError.from_wire(value)

# -*- test-case-name: tests.client.test_errors -*-
"""
The client's exception tree.

Everything the client raises is a L{QemudClientError}.  Errors the daemon
reported (a C{remote_error} reply) keep every field of that struct, and
their class is chosen by libvirt's error number, so callers can write
C{except NoDomainError} instead of comparing codes::

    QemudClientError                 .code .domain .message .remote ...
      +- InternalError (1)   NoSupport (3)      InvalidArg (8)
      +- OperationFailed (9) XMLError (27)      DomainExists (28)
      |    ConfigUnsupported (67) is an XMLError
      +- OperationDenied (29) RPCError (39)     NoDomainError (42)
      +- AuthFailed (45)     OperationInvalid (55)  OperationTimeout (68)
      +- ConnectionLost      the connection dropped; C{.reason} is the cause
      +- ConnectFailed       the daemon could not be reached
      +- ProtocolError       the peer broke the protocol (an RPCError)
      +- InvalidURIError     a URI we cannot use (an InvalidArg)

The code numbers are not repeated here: each class names the
L{qemud.errors} class it stands for, and L{error_class} maps a code to a
class through that.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.python.failure import Failure

from qemud import errors as _daemon
from qemud.rpc.errors import RemoteError


class QemudClientError(Exception):
    """
    Root of every error the client raises.

    @cvar counterpart: the daemon's class for the same libvirt error code.
    @ivar code: libvirt's C{virErrorNumber}.
    @ivar domain: libvirt's C{virErrorDomain} (which subsystem raised it).
    @ivar message: the full human text (the daemon's own, for remote errors).
    @ivar level: libvirt's error level (2 = error).
    @ivar str1: C{remote_error.str1} (libvirtd puts the message format here).
    @ivar str2: C{remote_error.str2}.
    @ivar str3: C{remote_error.str3}.
    @ivar int1: C{remote_error.int1}.
    @ivar int2: C{remote_error.int2}.
    @ivar remote: C{True} when the daemon reported the error, C{False} when
        the client itself raised it.
    """

    counterpart: ClassVar[type[_daemon.QemudError]] = _daemon.QemudError

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        domain: int | None = None,
        level: int = _daemon.LEVEL_ERROR,
        str1: str | None = None,
        str2: str | None = None,
        str3: str | None = None,
        int1: int = -1,
        int2: int = -1,
        remote: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = self.counterpart.code if code is None else code
        self.domain = self.counterpart.domain if domain is None else domain
        self.level = level
        self.str1 = str1
        self.str2 = str2
        self.str3 = str3
        self.int1 = int1
        self.int2 = int2
        self.remote = remote

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code}, domain={self.domain})"
        )


class InternalError(QemudClientError):
    """libvirt's INTERNAL_ERROR (1): something failed that should not have."""

    counterpart = _daemon.InternalError


class NoSupport(QemudClientError):
    """NO_SUPPORT (3): the daemon does not implement this function."""

    counterpart = _daemon.NoSupportError


class InvalidArg(QemudClientError):
    """INVALID_ARG (8): an argument (flags, a name, a path) is not acceptable."""

    counterpart = _daemon.InvalidArgError


class OperationFailed(QemudClientError):
    """OPERATION_FAILED (9): the operation was attempted and failed."""

    counterpart = _daemon.OperationFailedError


class XMLError(QemudClientError):
    """XML_ERROR (27): a domain or device XML document was refused."""

    counterpart = _daemon.DomainConfigError


class ConfigUnsupported(XMLError):
    """CONFIG_UNSUPPORTED (67): the XML asks for something the daemon cannot do."""

    counterpart = _daemon.ConfigUnsupportedError


class DomainExists(QemudClientError):
    """DOM_EXIST (28): a domain with that name or UUID exists already."""

    counterpart = _daemon.DomainExistsError


class OperationDenied(QemudClientError):
    """OPERATION_DENIED (29): not allowed on this (read-only) connection."""

    counterpart = _daemon.OperationDeniedError


class RPCError(QemudClientError):
    """RPC (39): a protocol-level problem (unknown procedure, bad message)."""

    counterpart = _daemon.RPCError


class NoDomainError(QemudClientError):
    """NO_DOMAIN (42): no domain matches the name, UUID or id."""

    counterpart = _daemon.NoDomainError


class AuthFailed(QemudClientError):
    """AUTH_FAILED (45): the daemon did not accept us."""

    counterpart = _daemon.AuthFailedError


class OperationInvalid(QemudClientError):
    """OPERATION_INVALID (55): the domain is in the wrong state for this."""

    counterpart = _daemon.OperationInvalidError


class OperationTimeout(QemudClientError):
    """OPERATION_TIMEOUT (68): QEMU or the guest did not answer in time."""

    counterpart = _daemon.OperationTimeoutError


class OperationUnsupported(QemudClientError):
    """OPERATION_UNSUPPORTED (84): not supported for this domain's configuration."""

    counterpart = _daemon.OperationUnsupportedError


class HostSystemError(QemudClientError):
    """SYSTEM_ERROR (38): an operating-system call failed on the daemon's side."""

    counterpart = _daemon.HostSystemError


class ConnectionLost(QemudClientError):
    """
    The connection dropped before the call was answered (or was closed).

    @ivar reason: the L{Failure} that says why (e.g. C{ConnectionDone},
        C{ConnectionRefusedError}, a L{ProtocolError} or L{KeepaliveTimeout}).
    """

    counterpart = _daemon.RPCError

    def __init__(self, reason: Failure) -> None:
        super().__init__(f"connection lost: {reason.getErrorMessage()}")
        self.reason = reason


class ConnectFailed(QemudClientError):
    """
    The daemon could not be reached (no socket, refused, TLS refused us).

    @ivar reason: the L{Failure} from the transport.
    """

    counterpart = _daemon.HostSystemError

    def __init__(self, where: str, reason: Failure) -> None:
        super().__init__(f"Failed to connect to '{where}': {reason.getErrorMessage()}")
        self.reason = reason


class ProtocolError(RPCError):
    """The peer broke the protocol (bad frame, reply to a call never made)."""


class KeepaliveTimeout(RPCError):
    """The daemon did not answer keepalive PINGs; the connection was dropped."""


class InvalidURIError(InvalidArg):
    """A connection URI that cannot be parsed or names an unknown transport."""


_CLASSES: tuple[type[QemudClientError], ...] = (
    InternalError,
    NoSupport,
    InvalidArg,
    OperationFailed,
    XMLError,
    ConfigUnsupported,
    DomainExists,
    OperationDenied,
    RPCError,
    NoDomainError,
    AuthFailed,
    OperationInvalid,
    OperationTimeout,
    OperationUnsupported,
    HostSystemError,
)

_BY_CODE: dict[int, type[QemudClientError]] = {cls.counterpart.code: cls for cls in _CLASSES}


def error_class(code: int) -> type[QemudClientError]:
    """
    @param code: a libvirt C{virErrorNumber}.
    @return: the class for it; L{QemudClientError} itself for codes without
        their own class.
    """
    return _BY_CODE.get(code, QemudClientError)


def make_remote_error(err: RemoteError) -> QemudClientError:
    """
    Build the exception for a C{remote_error} the daemon sent.

    @param err: the decoded C{remote_error}; when it has no message,
        libvirt's fallback C{"unknown error"} is used.
    @return: an instance of L{error_class}C{(code)} with every field kept.
    """
    cls = error_class(err.code)
    return cls(
        err.message if err.message is not None else "unknown error",
        code=err.code,
        domain=err.domain,
        level=err.level,
        str1=err.str1,
        str2=err.str2,
        str3=err.str3,
        int1=err.int1,
        int2=err.int2,
        remote=True,
    )

# -*- test-case-name: tests.test_errors -*-
"""
The daemon's exception tree.

Every error a client can see is a L{QemudError}: it carries libvirt's error
number (C{virErrorNumber}), the error domain (C{virErrorDomain}) and a detail
text.  The full message is built the way libvirt builds it, from a fixed
per-code prefix and the detail, so that virsh prints exactly what a libvirtd
user would read, e.g. C{Domain not found: no domain with matching name 'x'}.

This module is pure: it imports nothing but the standard library, so every
layer (domain, rpc, qemu, daemon, clients) may use it.
"""

from __future__ import annotations

from typing import ClassVar

# virErrorDomain values (libvirt 9.0 virterror.h)
FROM_NONE = 0
FROM_DOM = 6
FROM_RPC = 7
FROM_QEMU = 10
FROM_REMOTE = 13
FROM_DOMAIN = 20
FROM_SECURITY = 24
FROM_ACCESS = 55

# virErrorNumber values used by qemud (libvirt 9.0 virterror.h)
ERR_INTERNAL_ERROR = 1
ERR_NO_SUPPORT = 3
ERR_INVALID_ARG = 8
ERR_OPERATION_FAILED = 9
ERR_XML_ERROR = 27
ERR_DOM_EXIST = 28
ERR_OPERATION_DENIED = 29
ERR_SYSTEM_ERROR = 38
ERR_RPC = 39
ERR_NO_DOMAIN = 42
ERR_AUTH_FAILED = 45
ERR_OPERATION_INVALID = 55
ERR_CONFIG_UNSUPPORTED = 67
ERR_OPERATION_TIMEOUT = 68
ERR_OPERATION_UNSUPPORTED = 84

# virErrorLevel
LEVEL_ERROR = 2


class QemudError(Exception):
    """
    Base of every error reported to a client.

    @cvar code: libvirt's C{virErrorNumber}.
    @cvar domain: libvirt's C{virErrorDomain} (which subsystem raised it).
    @cvar prefix: libvirt's message format for C{code}; C{%s} is the detail.
    @ivar detail: what exactly went wrong, naming the offending value.
    """

    code: ClassVar[int] = ERR_INTERNAL_ERROR
    domain: ClassVar[int] = FROM_QEMU
    prefix: ClassVar[str] = "internal error: %s"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def message(self) -> str:
        """
        @return: the full text a client prints, libvirt-style.
        """
        return self.prefix % (self.detail,)

    def __str__(self) -> str:
        return self.message


class InternalError(QemudError):
    """Something failed that should not have; the detail says what."""


class NoSupportError(QemudError):
    """The requested function is not implemented by this daemon."""

    code = ERR_NO_SUPPORT
    domain = FROM_NONE
    prefix = "this function is not supported by the connection driver: %s"


class InvalidArgError(QemudError):
    """An argument (flags, a name, a path) is not acceptable."""

    code = ERR_INVALID_ARG
    prefix = "invalid argument: %s"


class OperationFailedError(QemudError):
    """An operation was attempted and failed (QEMU refused, I/O failed)."""

    code = ERR_OPERATION_FAILED
    prefix = "operation failed: %s"


class DomainConfigError(QemudError):
    """A domain XML document is malformed or semantically invalid."""

    code = ERR_XML_ERROR
    domain = FROM_DOMAIN
    prefix = "XML error: %s"


class ConfigUnsupportedError(DomainConfigError):
    """A domain XML document asks for something qemud cannot provide."""

    code = ERR_CONFIG_UNSUPPORTED
    prefix = "unsupported configuration: %s"


class DomainExistsError(QemudError):
    """A domain with that name or UUID exists already."""

    code = ERR_DOM_EXIST
    prefix = "operation failed: %s"


class OperationDeniedError(QemudError):
    """The connection may not do this (read-only access)."""

    code = ERR_OPERATION_DENIED
    domain = FROM_DOMAIN
    prefix = "operation forbidden: %s"


class HostSystemError(QemudError):
    """An operating-system call failed; the detail carries errno's text."""

    code = ERR_SYSTEM_ERROR
    prefix = "%s"


class RPCError(QemudError):
    """A protocol-level problem: unknown procedure or program, bad message."""

    code = ERR_RPC
    domain = FROM_RPC
    prefix = "%s"


class NoDomainError(QemudError):
    """No domain matches the name, UUID or id given."""

    code = ERR_NO_DOMAIN
    prefix = "Domain not found: %s"


class AuthFailedError(QemudError):
    """The peer could not be authenticated."""

    code = ERR_AUTH_FAILED
    domain = FROM_RPC
    prefix = "authentication failed: %s"


class OperationInvalidError(QemudError):
    """The domain is in the wrong state for this operation."""

    code = ERR_OPERATION_INVALID
    prefix = "Requested operation is not valid: %s"


class OperationTimeoutError(QemudError):
    """QEMU (or the guest) did not answer in time."""

    code = ERR_OPERATION_TIMEOUT
    prefix = "Timed out during operation: %s"


class OperationUnsupportedError(QemudError):
    """The operation is not supported for this domain's configuration."""

    code = ERR_OPERATION_UNSUPPORTED
    prefix = "Operation not supported: %s"

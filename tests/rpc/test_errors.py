"""
Tests for L{qemud.rpc.errors}: C{remote_error} built like libvirtd's, and
mapped back to the exception tree.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from qemud.errors import (
    InternalError,
    NoDomainError,
    NoSupportError,
    OperationDeniedError,
    OperationInvalidError,
    QemudError,
)
from qemud.rpc.errors import (
    ERROR_CLASSES,
    RemoteError,
    WireError,
    decode_error,
    encode_error,
    error_to_wire,
)
from tests.rpc.test_remote import wire_frame

DETAIL = "no domain with matching name 'nosuchdomain'"


class RemoteErrorTests(SynchronousTestCase):
    """The remote_error struct."""

    def test_matches_libvirtd_bytes(self) -> None:
        """NO_DOMAIN encodes to exactly the payload libvirtd sent [error-no-domain.txt]."""
        frame = wire_frame("error-no-domain-reply")
        self.assertEqual(encode_error(NoDomainError(DETAIL)), frame[28:])

    def test_fields(self) -> None:
        """message, level 2, str1 = format, str2 = detail, ints -1, dom/net absent."""
        value = error_to_wire(OperationDeniedError("read only access prevents virDomainCreate"))
        self.assertEqual(value.code, 29)
        self.assertEqual(value.domain, 20)
        self.assertEqual(value.message,
                         "operation forbidden: read only access prevents virDomainCreate")
        self.assertEqual((value.level, value.str1, value.str2, value.str3),
                         (2, "operation forbidden: %s",
                          "read only access prevents virDomainCreate", None))
        self.assertEqual((value.int1, value.int2, value.dom, value.net), (-1, -1, None, None))

    def test_decode_to_remote_error(self) -> None:
        """decode_error gives a RemoteError carrying every field."""
        err = decode_error(encode_error(NoSupportError("virDomainSave")))
        self.assertIsInstance(err, RemoteError)
        self.assertEqual((err.code, err.domain), (3, 0))
        self.assertEqual(str(err),
                         "this function is not supported by the connection driver: virDomainSave")
        self.assertEqual(err.str2, "virDomainSave")

    def test_to_qemud_error_by_code(self) -> None:
        """A RemoteError maps back to the exception class of its code."""
        for exc in (NoDomainError(DETAIL), OperationInvalidError("domain is not running"),
                    InternalError("x")):
            back = decode_error(encode_error(exc)).to_qemud_error()
            self.assertIs(type(back), type(exc))
            self.assertEqual(back.message, exc.message)

    def test_unknown_code_maps_to_base(self) -> None:
        """An unknown code gives a plain QemudError with the server's text."""
        back = RemoteError(999, 0, "strange").to_qemud_error()
        self.assertIs(type(back), QemudError)
        self.assertEqual(back.detail, "strange")

    def test_error_classes(self) -> None:
        """Code 1 is InternalError, not the base class."""
        self.assertIs(ERROR_CLASSES[1], InternalError)
        self.assertIs(ERROR_CLASSES[42], NoDomainError)

    def test_truncated_error_raises_wire_error(self) -> None:
        """A cut remote_error raises WireError."""
        self.assertRaises(WireError, decode_error, encode_error(InternalError("x"))[:-3])

"""
Tests for L{qemudclient.uri}.
"""

from __future__ import annotations

from qemudclient.errors import InvalidArg, InvalidURIError
from qemudclient.uri import default_uri, parse_uri
from twisted.trial.unittest import SynchronousTestCase

ENV = {"XDG_RUNTIME_DIR": "/run/user/1000"}
HOME = "/home/u"

# (uri, readonly, transport, host, port, socket, name)
TABLE: list[tuple[str, bool, str, str | None, int | None, str | None, str]] = [
    ("qemud:///session", False, "unix", None, None,
     "/run/user/1000/qemud/qemud-sock", "qemu:///session"),
    ("qemu:///session", False, "unix", None, None,
     "/run/user/1000/qemud/qemud-sock", "qemu:///session"),
    ("qemud:///system", False, "unix", None, None, "/run/qemud/qemud-sock", "qemu:///system"),
    ("qemud:///system", True, "unix", None, None, "/run/qemud/qemud-sock-ro", "qemu:///system"),
    ("qemu:///system", False, "unix", None, None, "/run/qemud/qemud-sock", "qemu:///system"),
    ("qemu+unix:///system?socket=/tmp/x/sock", False, "unix", None, None,
     "/tmp/x/sock", "qemu:///system"),
    ("qemu+unix:///system?socket=/tmp/x/sock", True, "unix", None, None,
     "/tmp/x/sock", "qemu:///system"),
    ("qemud+unix:///session?socket=/tmp/a%20b", False, "unix", None, None,
     "/tmp/a b", "qemu:///session"),
    ("qemud://host.example/", False, "tls", "host.example", 16514, None, "qemu:///"),
    ("qemud://host.example:1234/", False, "tls", "host.example", 1234, None, "qemu:///"),
    ("qemud+tcp://127.0.0.1/", False, "tcp", "127.0.0.1", 16509, None, "qemu:///"),
    ("qemud+tcp://127.0.0.1:5000/system", False, "tcp", "127.0.0.1", 5000, None,
     "qemu:///system"),
    ("qemu+tcp://127.0.0.1/system", False, "tcp", "127.0.0.1", 16509, None, "qemu:///system"),
    ("qemu+tls://h/system?pkipath=/p&no_verify=1", False, "tls", "h", 16514, None,
     "qemu:///system"),
    ("qemu://h/system", False, "tls", "h", 16514, None, "qemu:///system"),
    ("qemu+tcp://[::1]:16600/system", False, "tcp", "::1", 16600, None, "qemu:///system"),
]


class ParseURITests(SynchronousTestCase):
    """
    Tests for L{parse_uri}.
    """

    def test_table(self) -> None:
        """
        Every supported URI form yields the transport, address and
        C{CONNECT_OPEN} name in the table.
        """
        for uri, readonly, transport, host, port, sock, name in TABLE:
            parsed = parse_uri(uri, readonly=readonly, environ=ENV, home=HOME)
            self.assertEqual(
                (parsed.transport, parsed.host, parsed.port, parsed.socket, parsed.name),
                (transport, host, port, sock, name),
                uri,
            )
            self.assertEqual(parsed.uri, uri)

    def test_tls_parameters(self) -> None:
        """
        C{pkipath} and C{no_verify} are taken from the query string.
        """
        parsed = parse_uri("qemu+tls://h/system?pkipath=/p&no_verify=1", environ=ENV, home=HOME)
        self.assertEqual((parsed.pkipath, parsed.no_verify), ("/p", True))
        parsed = parse_uri("qemud://h/", environ=ENV, home=HOME)
        self.assertEqual((parsed.pkipath, parsed.no_verify), (None, False))
        self.assertEqual(parsed.driver, "qemud")

    def test_session_fallback(self) -> None:
        """
        Without C{XDG_RUNTIME_DIR} the session socket is C{~/.qemud.d/sock}.
        """
        parsed = parse_uri("qemud:///session", environ={}, home=HOME)
        self.assertEqual(parsed.socket, "/home/u/.qemud.d/sock")

    def test_invalid(self) -> None:
        """
        Unknown drivers and transports, hostless TCP, a host on a UNIX URI,
        an unknown path and garbage raise L{InvalidURIError}, an L{InvalidArg}
        with libvirt's INVALID_ARG code.
        """
        for uri in [
            "xen:///system",
            "qemu+ssh://h/system",
            "qemud+tcp:///system",
            "qemu+unix://h/system",
            "qemud:///nowhere",
            "not a uri",
            "qemu+tcp://h:notaport/",
        ]:
            with self.assertRaises(InvalidURIError, msg=uri) as cm:
                parse_uri(uri, environ=ENV, home=HOME)
            self.assertIsInstance(cm.exception, InvalidArg)
            self.assertEqual(cm.exception.code, 8)
            self.assertFalse(cm.exception.remote)


class DefaultURITests(SynchronousTestCase):
    """
    Tests for L{default_uri}.
    """

    def test_by_user(self) -> None:
        """
        Root defaults to the system daemon, anyone else to the session daemon.
        """
        self.assertEqual(default_uri({}, 0), "qemud:///system")
        self.assertEqual(default_uri({}, 1000), "qemud:///session")

    def test_environment(self) -> None:
        """
        C{QEMUD_DEFAULT_URI} overrides the default.
        """
        env = {"QEMUD_DEFAULT_URI": "qemu+tcp://h/system"}
        self.assertEqual(default_uri(env, 0), "qemu+tcp://h/system")

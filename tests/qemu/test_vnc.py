"""
Tests for L{qemud.qemu.vnc}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from qemud.errors import OperationFailedError
from qemud.qemu.vnc import VncPortAllocator


class _Host:
    def __init__(self, busy: set[int]) -> None:
        self.busy = busy
        self.probed: list[tuple[str | None, int]] = []

    def probe(self, listen: str | None, port: int) -> bool:
        self.probed.append((listen, port))
        return port not in self.busy


class VncPortAllocatorTests(SynchronousTestCase):
    """Port allocation without touching real sockets (the probe is faked)."""

    def test_lowest_free_port(self) -> None:
        """
        The lowest port from 5900 up that the host reports free is handed out,
        probed on the listen address.
        """
        host = _Host({5900, 5901})
        alloc = VncPortAllocator(probe=host.probe)
        self.assertEqual(alloc.acquire("127.0.0.1"), 5902)
        self.assertEqual(host.probed[-1], ("127.0.0.1", 5902))

    def test_never_twice_while_reserved(self) -> None:
        """
        A reserved port is skipped without probing, even if the host says it is
        free (QEMU has not bound it yet).
        """
        host = _Host(set())
        alloc = VncPortAllocator(probe=host.probe)
        ports = [alloc.acquire() for _ in range(3)]
        self.assertEqual(ports, [5900, 5901, 5902])
        self.assertEqual([p for _, p in host.probed], [5900, 5901, 5902])

    def test_release_makes_port_available(self) -> None:
        """
        A released port is handed out again.
        """
        alloc = VncPortAllocator(probe=_Host(set()).probe)
        first = alloc.acquire()
        alloc.acquire()
        alloc.release(first)
        self.assertEqual(alloc.acquire(), first)
        alloc.release(12345)

    def test_reserve(self) -> None:
        """
        L{VncPortAllocator.reserve} marks a port in use by a re-attached guest.
        """
        alloc = VncPortAllocator(probe=_Host(set()).probe)
        alloc.reserve(5900)
        self.assertEqual(alloc.acquire(), 5901)

    def test_exhausted(self) -> None:
        """
        With every port busy, acquiring fails with libvirt's message.
        """
        alloc = VncPortAllocator(5900, 5902, probe=_Host({5900, 5901, 5902}).probe)
        f = self.assertRaises(OperationFailedError, alloc.acquire)
        self.assertIn("Unable to find an unused port in range 'display' (5900-5902)", str(f))

    def test_probe_error(self) -> None:
        """
        A probe failing for another reason (bad listen address) is reported.
        """
        def probe(listen: str | None, port: int) -> bool:
            raise OSError(99, "Cannot assign requested address")

        alloc = VncPortAllocator(probe=probe)
        f = self.assertRaises(OperationFailedError, alloc.acquire, "10.9.9.9")
        self.assertIn("Cannot assign requested address", str(f))

"""
Fixtures for the integration tests: the tiny Linux test guest, QEMU, and
process clean-up.

Missing tools are a skip that names the Debian packages to install, except
in CI (C{CI} set), where they are a failure: CI must run these tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.guestimage import GuestImage, GuestImageError, MissingToolsError, ensure_image
from tests.integration.guests import QEMU_BINARY, ProcessReaper


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _apt_install(packages: list[str]) -> bool:
    try:
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            capture_output=True, timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.fixture(scope="session")
def linux_guest_image() -> GuestImage:
    """
    The tiny Linux guest (vmlinux, vmlinuz, initramfs), built once and cached.

    As root, missing build tools are installed with apt-get; otherwise the
    test is skipped with the packages to install (a failure in CI).
    """
    try:
        return ensure_image()
    except MissingToolsError as e:
        if os.geteuid() == 0 and shutil.which("apt-get") and _apt_install(e.packages):
            try:
                return ensure_image()
            except GuestImageError as again:
                _unavailable(f"cannot build the test guest: {again}")
        _unavailable(str(e))
    except GuestImageError as e:
        _unavailable(f"cannot build the test guest: {e}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def qemu_binary() -> str:
    """
    The path of C{qemu-system-x86_64}; skip (fail in CI) naming the package
    C{qemu-system-x86} when it is missing.
    """
    path = shutil.which(QEMU_BINARY)
    if path is None:
        _unavailable(f"{QEMU_BINARY} not found: apt-get install qemu-system-x86")
    assert path is not None
    return path


@pytest.fixture
def reaper() -> Iterator[ProcessReaper]:
    """
    Track processes the test starts; every one still running at teardown is
    killed by PID.
    """
    r = ProcessReaper()
    try:
        yield r
    finally:
        r.kill_all()

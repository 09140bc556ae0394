"""
Fixtures for the integration tests: the tiny Linux test guest, QEMU, and
process clean-up.

Missing tools are a skip that names the Debian packages to install, except
in CI (C{CI} set), where they are a failure: CI must run these tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
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


def _live_qemus() -> set[int]:
    """
    @return: the pids of running (not zombie) C{qemu-system-*} processes.
    """
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0", 1)[0]
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if b"qemu-system" in os.path.basename(argv0) and state != b"Z":
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True, scope="session")
def _no_qemu_left_behind() -> Iterator[None]:
    """
    Every test kills the QEMU processes it started: one still running when
    the session ends is killed here by PID and reported as an error.
    """
    before = _live_qemus()
    yield
    deadline = time.monotonic() + 5
    left = _live_qemus() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _live_qemus() - before
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"QEMU processes left running by the tests (now killed): {sorted(left)}"

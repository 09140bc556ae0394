# -*- test-case-name: tests.daemon.test_store -*-
"""
Crash-safe file writing.

L{atomic_write} replaces a file the way libvirt's C{virFileRewrite} does:
write a temporary file beside it, C{fsync} it, C{rename} it over the old
one and C{fsync} the directory.  A crash (or a full disk) at any point
leaves either the old file or the new one, never a mix, and never a
truncated file.

Temporary files are named C{.NAME.RANDOM.tmp}; L{remove_stale_temp_files}
deletes those a crash left behind.  This module is synchronous and pure
(standard library and L{qemud.errors} only).
"""

from __future__ import annotations

import errno as _errno
import os
import secrets

from qemud.errors import HostSystemError

#: Suffix of the temporary files L{atomic_write} creates.
TEMP_SUFFIX = ".tmp"


def temp_name(path: str) -> str:
    """
    @param path: the file about to be replaced.
    @return: a fresh temporary path in the same directory.
    """
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp_name(filename: str) -> bool:
    """
    @param filename: a file name (no directory).
    @return: whether it looks like one of L{atomic_write}'s temporary files.
    """
    return filename.startswith(".") and filename.endswith(TEMP_SUFFIX)


def _system_error(what: str, path: str, err: OSError) -> HostSystemError:
    code = err.errno if err.errno is not None else _errno.EIO
    return HostSystemError(f"{what} '{path}': {os.strerror(code)}")


def fsync_directory(directory: str) -> None:
    """
    Make a rename, creation or removal inside C{directory} durable.

    @param directory: the directory whose entries changed.
    @raise HostSystemError: when it cannot be opened or synced.
    """
    try:
        fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise _system_error("cannot open directory", directory, e) from e
    try:
        os.fsync(fd)
    except OSError as e:
        raise _system_error("cannot sync directory", directory, e) from e
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """
    Replace the contents of C{path} with C{data}, atomically (and durably).

    On any failure (ENOSPC, EIO, EACCES, ...) the temporary file is removed,
    the old file is left untouched, and a L{HostSystemError} names the path
    and the errno text, e.g. C{cannot write data to file '/x.xml': No space
    left on device}.

    @param path: the file to write; its directory must exist.
    @param data: the complete new contents.
    @param mode: permission bits of the new file (exact: umask is ignored).
    @param durable: fsync the file and its directory, so that the new
        contents survive a power loss; without it the write still survives a
        crash of the process (readers see the old or the new file).
    @raise HostSystemError: when the file could not be written.
    """
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as e:
        raise _system_error("cannot create file", path, e) from e
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise _system_error("cannot write data to file", path, e) from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
        fsync_directory(os.path.dirname(path))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_stale_temp_files(directory: str) -> list[str]:
    """
    Delete the temporary files a crash in L{atomic_write} left behind.

    Call this only where no write can be in progress (at daemon start-up).

    @param directory: the directory to clean; a missing one is fine.
    @return: the paths removed.
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    except OSError as e:
        raise _system_error("cannot read directory", directory, e) from e
    for name in names:
        if is_temp_name(name):
            path = os.path.join(directory, name)
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _system_error("cannot remove file", path, e) from e
            removed.append(path)
    return removed

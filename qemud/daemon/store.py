# -*- test-case-name: tests.daemon.test_store -*-
"""
Where domain definitions and live status documents live on disk.

The layout is libvirt's (C{shared/docs/design.md}, "State on disk"):

 - C{CONFIG_DIR/NAME.xml}: the persistent definition;
 - C{AUTOSTART_DIR/NAME.xml}: a symlink to the definition when the domain
   starts with the daemon (C{../NAME.xml} when the autostart directory is
   C{CONFIG_DIR/autostart}, as libvirt lays it out);
 - C{STATUS_DIR/NAME.xml}: the live status of a running domain.

This layer is XML-agnostic: it stores and returns text and bytes, and the
caller parses them.  It is synchronous (a write costs about a millisecond,
two C{fsync}s) and needs no reactor.  Every write goes through
L{qemud.daemon.fsutil.atomic_write}; directories are created mode 0700 on
first use; temporary files a crash left behind are removed when loading.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from qemud.daemon.fsutil import (
    atomic_write,
    fsync_directory,
    remove_stale_temp_files,
    temp_name,
)
from qemud.errors import HostSystemError, InvalidArgError

#: Called with (path, reason) for each file that was skipped while loading.
ProblemCallback = Callable[[str, str], None]

_SUFFIX = ".xml"


def check_name(name: str) -> None:
    """
    Refuse names that are not safe as a single file name.

    The domain layer validates names; this is the file layer's own guard.

    @param name: a domain name.
    @raise InvalidArgError: for an empty name, one containing C{/} or NUL,
        or one starting with C{.}.
    """
    if not name or "/" in name or "\0" in name or name.startswith("."):
        raise InvalidArgError(f"domain name '{name}' cannot be used as a file name")


def _ignore(path: str, reason: str) -> None:
    pass


class DomainStore:
    """
    Domain configs, autostart links and status documents in three folders.

    @ivar config_dir: where C{NAME.xml} definitions are kept.
    @ivar status_dir: where live status documents are kept.
    @ivar autostart_dir: where the autostart links are kept.
    """

    def __init__(self, config_dir: str, status_dir: str, autostart_dir: str | None = None) -> None:
        """
        @param config_dir: folder of the persistent definitions.
        @param status_dir: folder of the status documents.
        @param autostart_dir: folder of the autostart links; libvirt's
            C{CONFIG_DIR/autostart} when not given.
        """
        self.config_dir = config_dir
        self.status_dir = status_dir
        self.autostart_dir = autostart_dir or os.path.join(config_dir, "autostart")
        self._made: set[str] = set()

    # -- paths ------------------------------------------------------------

    def config_path(self, name: str) -> str:
        """
        @param name: a domain name.
        @return: the path of its definition.
        @raise InvalidArgError: for a name unusable as a file name.
        """
        check_name(name)
        return os.path.join(self.config_dir, name + _SUFFIX)

    def status_path(self, name: str) -> str:
        """
        @param name: a domain name.
        @return: the path of its status document.
        @raise InvalidArgError: for a name unusable as a file name.
        """
        check_name(name)
        return os.path.join(self.status_dir, name + _SUFFIX)

    def autostart_path(self, name: str) -> str:
        """
        @param name: a domain name.
        @return: the path of its autostart link.
        @raise InvalidArgError: for a name unusable as a file name.
        """
        check_name(name)
        return os.path.join(self.autostart_dir, name + _SUFFIX)

    def _ensure_dir(self, directory: str) -> None:
        if directory in self._made:
            return
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as e:
            raise HostSystemError(
                f"cannot create directory '{directory}': {os.strerror(e.errno or 0)}"
            ) from e
        self._made.add(directory)

    # -- configs ----------------------------------------------------------

    def save_config(self, name: str, xml_text: str) -> None:
        """
        Write (or replace) a domain's persistent definition atomically.

        @param name: the domain name.
        @param xml_text: the formatted definition.
        @raise InvalidArgError: for a name unusable as a file name.
        @raise HostSystemError: when the file cannot be written; the old
            definition is then unchanged.
        """
        path = self.config_path(name)
        self._ensure_dir(self.config_dir)
        atomic_write(path, xml_text.encode("utf-8"))

    def remove_config(self, name: str) -> bool:
        """
        Delete a domain's definition and its autostart link.

        @param name: the domain name.
        @return: whether a definition existed.
        @raise HostSystemError: when a file exists but cannot be removed.
        """
        self.set_autostart(name, False)
        return self._remove(self.config_path(name))

    def load_configs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """
        Read every definition, skipping files that cannot be read.

        Leftover temporary files are removed first.  Parsing is the
        caller's job; a file that reads fine but does not parse is its to
        report.

        @return: C{(configs, problems)}: (name, XML text) pairs sorted by
            name, and (path, reason) for each file skipped.
        """
        problems: list[tuple[str, str]] = []

        def report(path: str, reason: str) -> None:
            problems.append((path, reason))

        found = []
        for name, path, data in self._load(self.config_dir, report):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                report(path, f"not UTF-8 text: {e.reason} at byte {e.start}")
                continue
            found.append((name, text))
        return found, problems

    # -- status -----------------------------------------------------------

    def save_status(self, name: str, document: bytes) -> None:
        """
        Write (or replace) a running domain's status document atomically
        (without fsync: see the comment below).

        @param name: the domain name.
        @param document: the serialised status.
        @raise InvalidArgError: for a name unusable as a file name.
        @raise HostSystemError: when the file cannot be written.
        """
        path = self.status_path(name)
        self._ensure_dir(self.status_dir)
        # Atomic but not fsynced: it describes QEMU processes, which a power
        # loss ends too; a crashed daemon finds the old or the new file.
        atomic_write(path, document, durable=False)

    def remove_status(self, name: str) -> bool:
        """
        Delete a domain's status document (the domain stopped).

        @param name: the domain name.
        @return: whether one existed.
        @raise HostSystemError: when it exists but cannot be removed.
        """
        return self._remove(self.status_path(name))

    def load_statuses(self, on_problem: ProblemCallback = _ignore) -> list[tuple[str, bytes]]:
        """
        Read every status document, skipping files that cannot be read.

        @param on_problem: called with (path, reason) for each skipped file.
        @return: (name, document) pairs sorted by name.
        """
        return [(name, data) for name, _path, data in self._load(self.status_dir, on_problem)]

    # -- autostart --------------------------------------------------------

    def set_autostart(self, name: str, enabled: bool) -> None:
        """
        Create or remove the autostart link of a domain.

        The link is relative (C{../NAME.xml} in libvirt's layout), so the
        whole configuration folder can be moved.

        @param name: the domain name.
        @param enabled: whether the domain starts with the daemon.
        @raise HostSystemError: when the link cannot be changed.
        """
        link = self.autostart_path(name)
        if not enabled:
            self._remove(link)
            return
        target = os.path.relpath(self.config_path(name), self.autostart_dir)
        self._ensure_dir(self.autostart_dir)
        if os.path.islink(link) and os.readlink(link) == target:
            return
        tmp = temp_name(link)
        try:
            os.symlink(target, tmp)
            os.replace(tmp, link)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise HostSystemError(
                f"cannot create autostart link '{link}' to '{target}': "
                f"{os.strerror(e.errno or 0)}"
            ) from e
        fsync_directory(self.autostart_dir)

    def autostart_names(self) -> set[str]:
        """
        @return: the names whose autostart link points at an existing
            definition in the config folder.
        """
        try:
            entries = os.listdir(self.autostart_dir)
        except FileNotFoundError:
            return set()
        except OSError as e:
            raise HostSystemError(
                f"cannot read directory '{self.autostart_dir}': {os.strerror(e.errno or 0)}"
            ) from e
        names = set()
        for entry in entries:
            if not entry.endswith(_SUFFIX) or entry.startswith("."):
                continue
            name = entry[: -len(_SUFFIX)]
            link = os.path.join(self.autostart_dir, entry)
            config = os.path.join(self.config_dir, entry)
            try:
                if os.path.samefile(link, config):
                    names.add(name)
            except OSError:
                continue
        return names

    # -- helpers ----------------------------------------------------------

    def _remove(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise HostSystemError(
                f"cannot remove file '{path}': {os.strerror(e.errno or 0)}"
            ) from e
        fsync_directory(os.path.dirname(path))
        return True

    def _load(self, directory: str,
              on_problem: ProblemCallback) -> list[tuple[str, str, bytes]]:
        try:
            remove_stale_temp_files(directory)
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        except HostSystemError as e:
            on_problem(directory, e.detail)
            return []
        except OSError as e:
            on_problem(directory, os.strerror(e.errno or 0))
            return []
        found = []
        for entry in entries:
            if not entry.endswith(_SUFFIX):
                continue
            path = os.path.join(directory, entry)
            name = entry[: -len(_SUFFIX)]
            try:
                check_name(name)
            except InvalidArgError:
                on_problem(path, "file name is not a valid domain name")
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                on_problem(path, os.strerror(e.errno or 0))
                continue
            if not data.strip():
                on_problem(path, "file is empty")
                continue
            found.append((name, path, data))
        return found

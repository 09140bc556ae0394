# -*- test-case-name: tests.daemon.test_paths -*-
"""
Where a daemon keeps its sockets, configs, status files, logs and guest data.

Three layouts, after libvirt's:

  - system (root): C{/etc/qemud/qemu}, C{/run/qemud}, C{/var/log/qemud/qemu},
    C{/var/lib/qemud};
  - session (a normal user): the XDG base directories
    (C{$XDG_CONFIG_HOME/qemud/qemu}, C{$XDG_RUNTIME_DIR/qemud},
    C{$XDG_STATE_HOME/qemud/...});
  - rooted (C{--root DIR}): the system layout below C{DIR}, so that tests and
    tooling can run isolated daemons side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DaemonPaths:
    """
    Every path a daemon uses.

    @ivar config_dir: persistent domain configs (C{NAME.xml}).
    @ivar autostart_dir: autostart links (C{NAME.xml -> ../NAME.xml}).
    @ivar status_dir: live status of running domains (C{NAME.xml}).
    @ivar run_dir: sockets and per-guest QMP sockets live below it.
    @ivar socket: the read-write UNIX socket.
    @ivar socket_ro: the read-only UNIX socket (system layout only).
    @ivar log_dir: guest logs (C{NAME.log}: QEMU's stdout and stderr).
    @ivar lib_dir: per-guest home directories and other guest data.
    @ivar save_dir: managed-save images (C{NAME.save}).
    @ivar cache_dir: what can be recomputed (QEMU capability probes).
    """

    config_dir: str
    autostart_dir: str
    status_dir: str
    run_dir: str
    socket: str
    socket_ro: str | None
    log_dir: str
    lib_dir: str
    save_dir: str
    cache_dir: str

    @classmethod
    def system(cls, root: str = "/") -> DaemonPaths:
        """
        @param root: prefix every path with this directory (C{--root}).
        @return: the system layout, below C{root}.
        """

        def at(*parts: str) -> str:
            return os.path.join(root, *parts)

        config = at("etc", "qemud", "qemu")
        run = at("run", "qemud")
        lib = at("var", "lib", "qemud")
        return cls(
            config_dir=config,
            autostart_dir=os.path.join(config, "autostart"),
            status_dir=os.path.join(run, "qemu"),
            run_dir=run,
            socket=os.path.join(run, "qemud-sock"),
            socket_ro=os.path.join(run, "qemud-sock-ro"),
            log_dir=at("var", "log", "qemud", "qemu"),
            lib_dir=lib,
            save_dir=os.path.join(lib, "save"),
            cache_dir=at("var", "cache", "qemud"),
        )

    @classmethod
    def session(cls, environ: dict[str, str] | None = None) -> DaemonPaths:
        """
        @param environ: the environment to read XDG variables from
            (C{os.environ} when not given).
        @return: the per-user session layout.
        """
        env = dict(os.environ if environ is None else environ)
        home = env.get("HOME") or os.path.expanduser("~")
        config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        state_home = env.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
        cache_home = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
        runtime = env.get("XDG_RUNTIME_DIR")
        if runtime:
            run = os.path.join(runtime, "qemud")
            socket = os.path.join(run, "qemud-sock")
        else:
            run = os.path.join(home, ".qemud.d")
            socket = os.path.join(run, "sock")
        config = os.path.join(config_home, "qemud", "qemu")
        lib = os.path.join(state_home, "qemud", "lib")
        return cls(
            config_dir=config,
            autostart_dir=os.path.join(config, "autostart"),
            status_dir=os.path.join(run, "qemu"),
            run_dir=run,
            socket=socket,
            socket_ro=None,
            log_dir=os.path.join(state_home, "qemud", "log"),
            lib_dir=lib,
            save_dir=os.path.join(lib, "save"),
            cache_dir=os.path.join(cache_home, "qemud"),
        )

    def domain_dir(self, name: str) -> str:
        """
        @return: the private directory of domain C{name} (its C{HOME}).
        """
        return os.path.join(self.lib_dir, "domain-" + name)

    def qmp_socket(self, uuid: str) -> str:
        """
        @param uuid: the domain's UUID; names can be 255 bytes long, too long
            for a UNIX socket path (108 bytes), so the socket is named by UUID.
        @return: the QMP socket path of that domain.
        """
        return os.path.join(self.run_dir, "qmp", uuid + ".sock")

    def log_file(self, name: str) -> str:
        """
        @return: the log file of domain C{name}.
        """
        return os.path.join(self.log_dir, name + ".log")

    def managed_save_file(self, name: str) -> str:
        """
        @return: the managed-save image of domain C{name}.
        """
        return os.path.join(self.save_dir, name + ".save")

    def _private_dirs(self) -> tuple[str, ...]:
        return (self.config_dir, self.autostart_dir, self.status_dir, self.log_dir,
                self.lib_dir, self.save_dir, self.cache_dir, os.path.join(self.run_dir, "qmp"))

    def uncreatable_dir(self) -> tuple[str, str] | None:
        """
        Find, without creating anything, a directory of the layout that
        L{create_dirs} could not create: its nearest existing ancestor is
        not a directory this process may write in.

        @return: (the directory, why), or C{None} when all can be made.
        """
        for path in (self.run_dir, *self._private_dirs()):
            existing = path
            while not os.path.lexists(existing):
                existing = os.path.dirname(existing)
            if not os.path.isdir(existing):
                return path, f"{existing} is not a directory"
            if existing != path and not os.access(existing, os.W_OK | os.X_OK):
                return path, f"no permission to write in {existing}"
        return None

    def create_dirs(self) -> None:
        """
        Create every directory of the layout that does not exist yet, private
        (0700) except the socket directory, which clients must traverse
        (0755).  Modes are set explicitly: twistd runs with umask 077 when it
        daemonizes.
        """
        os.makedirs(self.run_dir, exist_ok=True)
        os.chmod(self.run_dir, 0o755)
        for path in self._private_dirs():
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)

# -*- test-case-name: tests.test_tap -*-
"""
C{twistd qemud}: command-line options and the service tree.

This is the only module that touches the global reactor.  The tree is a
L{MultiService}: the domain manager first (it loads configs and status files
before anything listens), then one L{StreamServerEndpointService} per
listening socket.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python import usage

from qemud.daemon.listeners import (
    DEFAULT_TCP_PORT,
    DEFAULT_TLS_PORT,
    AddressError,
    parse_host_port,
    tcp_endpoint,
    unix_endpoint,
)
from qemud.daemon.paths import DaemonPaths
from qemud.daemon.protocol import ClientTracker, RPCServerFactory

# Seconds a stopping daemon waits for calls in flight (a guest start, a save).
DRAIN_TIMEOUT = 30.0
# Seconds without a new call after which a stopping daemon closes its clients
# (counted from the latest call or reply: clients idle for longer are closed at
# once).
QUIET_PERIOD = 0.05


class Options(usage.Options):
    """
    The options of C{twistd qemud}.  They are a contract: keep them stable
    and documented in the README.
    """

    synopsis = "[options]"
    longdesc = (
        "Run the qemud virtualization daemon. By default root runs the system "
        "daemon (/run/qemud/qemud-sock and the read-only qemud-sock-ro) and other "
        "users a session daemon ($XDG_RUNTIME_DIR/qemud/qemud-sock)."
    )

    optFlags = [
        ["session", None, "Run a per-user session daemon (default for non-root)."],
        ["system", None, "Run the system daemon (default for root)."],
        ["allow-insecure-tcp", None, "Allow --listen-tcp on addresses that are not loopback."],
        ["tls-anonymous-readonly", None,
         "Let TLS clients without a certificate in, read-only."],
        ["no-autostart", None, "Do not start autostart guests when the daemon starts."],
    ]

    optParameters = [
        ["root", None, None, "Put every path (sockets, configs, status, logs) below DIR."],
        ["pki-dir", None, None,
         "Directory holding cacert.pem, servercert.pem, serverkey.pem and optional cacrl.pem "
         "(default: libvirt's locations)."],
        ["max-clients", None, 5000, "Most client connections at once.", int],
        ["max-client-requests", None, 64, "Most calls in flight per client.", int],
        ["tls-handshake-timeout", None, 10.0, "Seconds a client has to finish the TLS handshake.",
         float],
        ["qmp-timeout", None, 60.0,
         "Seconds QEMU has to answer a monitor command before the call fails.", float],
        ["kill-timeout", None, 10.0,
         "Seconds between SIGTERM and SIGKILL when a guest is destroyed.", float],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["listen-tcp"] = []
        self["listen-tls"] = []
        self["tls-allowed-dn"] = []
        self["define"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        Also listen (read-write) on a Twisted server endpoint string, e.g.
        systemd:domain=UNIX:index=0 for socket activation. Repeatable.
        """
        self["listen"].append(endpoint)

    def opt_listen_tcp(self, address: str) -> None:
        """
        Listen with plain TCP on HOST:PORT (IPv4, or [IPv6]:PORT; default port
        16509). Repeatable. Loopback only unless --allow-insecure-tcp.
        """
        try:
            self["listen-tcp"].append(parse_host_port(address, DEFAULT_TCP_PORT))
        except AddressError as e:
            raise usage.UsageError(f"--listen-tcp: {e}") from None

    def opt_listen_tls(self, address: str) -> None:
        """
        Listen with TLS (client certificates required) on HOST:PORT (default
        port 16514; [::1]:PORT for IPv6). Repeatable.
        """
        try:
            self["listen-tls"].append(parse_host_port(address, DEFAULT_TLS_PORT))
        except AddressError as e:
            raise usage.UsageError(f"--listen-tls: {e}") from None

    def opt_tls_allowed_dn(self, pattern: str) -> None:
        """
        Only TLS clients whose certificate DN matches this glob get in
        (e.g. 'O=Example,CN=*'). Repeatable.
        """
        self["tls-allowed-dn"].append(pattern)

    def opt_define(self, path: str) -> None:
        """
        Define the domain in this XML file at start-up unless a domain of
        that name exists already. Repeatable.
        """
        self["define"].append(path)

    def postOptions(self) -> None:
        """
        Check the options that depend on each other.
        """
        if self["session"] and self["system"]:
            raise usage.UsageError("--session and --system exclude each other")
        if not self["session"] and not self["system"]:
            self["system" if os.geteuid() == 0 else "session"] = True
        for address in self["listen-tcp"]:
            if not address.is_loopback and not self["allow-insecure-tcp"]:
                raise usage.UsageError(
                    f"--listen-tcp {address}: plain TCP carries no authentication or "
                    "encryption; use a loopback address, --listen-tls, or add "
                    "--allow-insecure-tcp")
        for name in ("qmp-timeout", "kill-timeout", "tls-handshake-timeout"):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be a positive number of seconds")
        if self["max-clients"] < 1 or self["max-client-requests"] < 1:
            raise usage.UsageError("--max-clients and --max-client-requests must be at least 1")
        for path in self["define"]:
            if not os.path.isfile(path):
                raise usage.UsageError(f"--define: no such file {path!r}")

    def paths(self) -> DaemonPaths:
        """
        @return: the directory layout these options select.
        """
        if self["root"]:
            paths = DaemonPaths.system(os.path.abspath(self["root"]))
            if self["session"]:
                paths = _without_ro_socket(paths)
            return paths
        return DaemonPaths.system() if self["system"] else DaemonPaths.session()


def _without_ro_socket(paths: DaemonPaths) -> DaemonPaths:
    return replace(paths, socket_ro=None)


class _Signals(Service):
    """
    SIGHUP re-reads the config directory; SIGTERM stops the daemon with exit
    status 0 once in-flight calls have been answered.

    twistd's own SIGTERM handler makes the process exit with the signal;
    ours stops the reactor instead, so a clean stop reports success.
    """

    log = Logger()

    def __init__(self, reactor: Any, reload: Callable[[], None], tracker: ClientTracker,
                 drain_timeout: float) -> None:
        self._reactor = reactor
        self._reload = reload
        self._tracker = tracker
        self._drain_timeout = drain_timeout

    def startService(self) -> None:
        super().startService()
        signal.signal(signal.SIGHUP, self._on_hup)
        # After the reactor installed its own handlers.
        self._reactor.callWhenRunning(signal.signal, signal.SIGTERM, self._on_term)

    def stopService(self) -> Deferred[None]:
        """
        Fire once every call in flight is answered, clients have gone quiet
        (a client's next call right after a reply, as virsh's lookup after a
        start, is served too) and every client has been disconnected
        gracefully; or after the drain timeout.  Listeners (stopped before
        this service) accept no new clients meanwhile.
        """
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        super().stopService()
        if self._tracker.inflight:
            self.log.info("waiting for {count} calls in flight", count=self._tracker.inflight)
        drained: Deferred[None] = Deferred.fromCoroutine(self._drain())
        drained.addTimeout(self._drain_timeout, self._reactor, onTimeoutCancel=lambda *_: None)
        return drained

    async def _drain(self) -> None:
        tracker, clock = self._tracker, self._reactor.seconds
        while True:
            await tracker.when_idle()
            quiet_from = tracker.last_active_at + QUIET_PERIOD
            if not tracker.clients or clock() >= quiet_from:
                break
            await deferLater(self._reactor, quiet_from - clock(), lambda: None)
        await tracker.close_all()

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.log.info("SIGHUP: re-reading the config directory")
        self._reactor.callFromThread(self._reload)

    def _on_term(self, signum: int, frame: Any) -> None:
        self.log.info("SIGTERM: stopping; guests keep running")
        self._reactor.callFromThread(self._reactor.stop)


def _listen(parent: MultiService, endpoint: Any, factory: Any) -> None:
    service = StreamServerEndpointService(endpoint, factory)
    # A listener that cannot bind stops the daemon with the reason.
    service._raiseSynchronously = True
    service.setServiceParent(parent)


def makeService(config: Options) -> IService:
    """
    Build the daemon's service tree from parsed options.

    @param config: the parsed L{Options}.
    @return: the root service.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    from qemud.daemon.manager import DomainManagerService, build_driver
    from qemud.qemu.guest import GuestTimeouts

    paths = config.paths()
    # Checked before twistd daemonizes or writes its pidfile; created later,
    # when the daemon starts.
    uncreatable = paths.uncreatable_dir()
    if uncreatable is not None:
        sys.stderr.write(f"qemud: cannot create directory {uncreatable[0]}: {uncreatable[1]}\n")
        raise SystemExit(1)
    session = bool(config["session"])
    timeouts = GuestTimeouts(command=config["qmp-timeout"], kill=config["kill-timeout"])
    driver = build_driver(reactor, paths, timeouts=timeouts)
    root = MultiService()
    manager = DomainManagerService(driver, defines=config["define"],
                                   autostart=not config["no-autostart"])
    manager.setServiceParent(root)
    tracker = ClientTracker(config["max-clients"], reactor.seconds)
    # Stopped after the listeners (services stop in reverse order).
    _Signals(reactor, driver.reload_configs, tracker, DRAIN_TIMEOUT).setServiceParent(root)
    default_uri = "qemu:///session" if session else "qemu:///system"

    def factory(readonly: bool, secure: bool) -> RPCServerFactory:
        return RPCServerFactory(driver, reactor, readonly=readonly, secure=secure,
                                max_client_requests=config["max-client-requests"],
                                default_uri=default_uri, tracker=tracker)

    _listen(root, unix_endpoint(reactor, paths.socket, 0o600), factory(False, True))
    if paths.socket_ro is not None:
        _listen(root, unix_endpoint(reactor, paths.socket_ro, 0o666), factory(True, True))
    for description in config["listen"]:
        _listen(root, serverFromString(reactor, description), factory(False, True))
    for address in config["listen-tcp"]:
        _listen(root, tcp_endpoint(reactor, address), factory(False, False))
    if config["listen-tls"]:
        from qemud.daemon.tls import TLSConfigError, load_tls_settings, tls_server_factory

        try:
            settings = load_tls_settings(config["pki-dir"], session=session)
        except TLSConfigError as e:
            sys.stderr.write(f"qemud: {e.message}\n")
            raise SystemExit(1) from None
        for address in config["listen-tls"]:
            wrapped = tls_server_factory(
                factory(False, True), settings, reactor,
                allowed_dn=tuple(config["tls-allowed-dn"]),
                anonymous_readonly=bool(config["tls-anonymous-readonly"]),
                handshake_timeout=config["tls-handshake-timeout"])
            _listen(root, tcp_endpoint(reactor, address), wrapped)
    # What start-up built lives as long as the daemon: keep it out of every
    # later collection, including the one at exit (a stop takes about 10 ms
    # instead of 50).
    reactor.callWhenRunning(gc.freeze)
    return root

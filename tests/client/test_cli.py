"""
Tests for L{qemudclient.cli}: virsh-layout text, JSON documents, exit
statuses, against canned data and the in-memory scripted server.
"""

from __future__ import annotations

import io
import json
from typing import Any

from qemudclient import cli
from qemudclient.model import DomainEvent, DomainInfo, DomainRef, JobInfo, NodeInfo
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from tests.client.fakeserver import UUID1, Harness

RT1 = DomainRef("rt1", UUID1, 1)
RT1_OFF = DomainRef("rt1", UUID1, -1)


class FormatTests(SynchronousTestCase):
    """
    Text layouts match virsh's, as captured in shared/wire-traces.
    """

    def test_list_running(self) -> None:
        """
        The table of list-all-running.txt, dashes included.
        """
        self.assertEqual(
            cli.format_list([(RT1, (1, 1))]),
            " Id   Name   State\n"
            "----------------------\n"
            " 1    rt1    running\n",
        )

    def test_list_shut_off_and_empty(self) -> None:
        """
        The tables of list-all-defined.txt and list-all-empty.txt.
        """
        self.assertEqual(
            cli.format_list([(RT1_OFF, (5, 0))]),
            " Id   Name   State\n-----------------------\n -    rt1    shut off\n",
        )
        self.assertEqual(cli.format_list([]), " Id   Name   State\n--------------------\n")

    def test_list_sorted_and_json(self) -> None:
        """
        Running domains come first by id, then inactive ones by name; the
        JSON keys are the documented ones.
        """
        b = DomainRef("b", UUID1, -1)
        a = DomainRef("a", UUID1, -1)
        r2 = DomainRef("z", UUID1, 2)
        entries = cli.sort_domains([(b, (5, 0)), (r2, (1, 1)), (a, (5, 2)), (RT1, (3, 1))])
        self.assertEqual([e[0].name for e in entries], ["rt1", "z", "a", "b"])
        doc = cli.list_json(entries)
        self.assertEqual(doc[0], {
            "id": 1, "name": "rt1", "uuid": "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b",
            "state": "paused", "state_code": 3, "reason": "user", "reason_code": 1})
        self.assertEqual((doc[2]["id"], doc[2]["state"], doc[2]["reason"]),
                         (None, "shut off", "destroyed"))

    def test_dominfo(self) -> None:
        """
        The lines of dominfo-running.txt and dominfo-inactive.txt (without
        the security lines); CPU time only when non-zero.
        """
        running = cli.DomInfo(RT1, "hvm", DomainInfo(1, 65536, 65536, 1, 2_000_000_000),
                              True, False, False)
        self.assertEqual(
            cli.format_dominfo(running),
            "Id:             1\n"
            "Name:           rt1\n"
            "UUID:           8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b\n"
            "OS Type:        hvm\n"
            "State:          running\n"
            "CPU(s):         1\n"
            "CPU time:       2.0s\n"
            "Max memory:     65536 KiB\n"
            "Used memory:    65536 KiB\n"
            "Persistent:     yes\n"
            "Autostart:      disable\n"
            "Managed save:   no\n",
        )
        off = cli.DomInfo(RT1_OFF, "hvm", DomainInfo(5, 65536, 65536, 1, 0), True, True, None)
        text = cli.format_dominfo(off)
        self.assertIn("Id:             -\n", text)
        self.assertNotIn("CPU time", text)
        self.assertIn("Autostart:      enable\n", text)
        self.assertIn("Managed save:   unknown\n", text)
        self.assertEqual(cli.dominfo_json(off), {
            "id": None, "name": "rt1", "uuid": "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b",
            "os_type": "hvm", "state": "shut off", "state_code": 5, "cpus": 1,
            "cpu_time_ns": 0, "max_memory_kib": 65536, "used_memory_kib": 65536,
            "persistent": True, "autostart": True, "managed_save": None})

    def test_domstate(self) -> None:
        """
        "paused (user)" and "shut off (unknown)" with --reason, the bare
        state without.
        """
        self.assertEqual(cli.format_domstate(3, 1, True), "paused (user)\n")
        self.assertEqual(cli.format_domstate(5, 0, True), "shut off (unknown)\n")
        self.assertEqual(cli.format_domstate(1, 1, False), "running\n")
        self.assertEqual(cli.domstate_json(1, 5), {
            "state": "running", "state_code": 1, "reason": "unpaused", "reason_code": 5})

    def test_nodeinfo(self) -> None:
        """
        The lines of nodeinfo.txt.
        """
        n = NodeInfo("x86_64", 4942028, 2, 2596, 1, 1, 2, 1)
        self.assertEqual(
            cli.format_nodeinfo(n),
            "CPU model:           x86_64\n"
            "CPU(s):              2\n"
            "CPU frequency:       2596 MHz\n"
            "CPU socket(s):       1\n"
            "Core(s) per socket:  2\n"
            "Thread(s) per core:  1\n"
            "NUMA cell(s):        1\n"
            "Memory size:         4942028 KiB\n",
        )
        self.assertEqual(cli.nodeinfo_json(n)["cores_per_socket"], 2)

    def test_version(self) -> None:
        """
        Versions print as major.minor.micro; the daemon line only on request.
        """
        text = cli.format_version("QEMU", 7002022, None)
        self.assertIn("Running hypervisor: QEMU 7.2.22\n", text)
        self.assertNotIn("daemon", text)
        self.assertIn("Running against daemon: 9.0.0\n", cli.format_version("QEMU", 1, 9000000))
        self.assertEqual(cli.version_json("QEMU", 7002022, 9000000)["hypervisor_version"],
                         "7.2.22")

    def test_events(self) -> None:
        """
        Event lines read like virsh event's, with an optional timestamp;
        the JSON object carries the documented keys.
        """
        ev = DomainEvent(0, RT1, {"event": 2, "detail": 0}, timestamp=1795659513.857)
        self.assertEqual(cli.format_event(ev), "event 'lifecycle' for domain 'rt1': Started Booted\n")
        self.assertEqual(
            cli.format_event(ev, timestamp=True),
            "2026-11-26 02:18:33.857+0000: event 'lifecycle' for domain 'rt1': Started Booted\n",
        )
        self.assertEqual(cli.event_json(ev), {
            "timestamp": "2026-11-26T02:18:33.857+00:00", "event": "lifecycle", "event_id": 0,
            "domain": {"id": 1, "name": "rt1", "uuid": "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"},
            "type": "Started", "type_code": 2, "detail": "Booted", "detail_code": 0})
        added = DomainEvent(19, RT1, {"dev_alias": "virtio-disk1"})
        self.assertEqual(cli.format_event(added),
                         "event 'device-added' for domain 'rt1': virtio-disk1\n")
        self.assertEqual(cli.event_json(added)["dev_alias"], "virtio-disk1")
        tray = DomainEvent(10, RT1, {"dev_alias": "ide0-1-0", "reason": 0})
        self.assertEqual(cli.format_event(tray),
                         "event 'tray-change' for domain 'rt1' disk ide0-1-0: opened\n")
        self.assertEqual(cli.format_event(DomainEvent(1, RT1)), "event 'reboot' for domain 'rt1'\n")

    def test_progress(self) -> None:
        """
        The progress line shows the percentage of data processed.
        """
        job = JobInfo(1, 0, 0, 200, 50, 150, 0, 0, 0, 0, 0, 0)
        self.assertEqual(cli.format_progress("Save", job), "\rSave: [ 25 %]")
        self.assertIsNone(cli.format_progress("Save", None))


class RunTests(SynchronousTestCase):
    """
    Whole invocations against the scripted server.
    """

    def invoke(self, *argv: str, tty: bool = False, h: Harness | None = None,
               domains: list[Any] | None = None) -> tuple[int, str, str]:
        self.h = h = h or Harness()
        if domains is not None:
            h.server.domains = domains
        out, err = io.StringIO(), io.StringIO()
        uris: list[str] = []

        def connect(uri: str, reactor: Any, readonly: bool = False) -> Deferred[Any]:
            uris.append(uri)
            return h.open(uri=uri, readonly=readonly)

        d = ensureDeferred(cli.run(h.clock, argv, out=out, err=err, environ={},
                                   connect_fn=connect, tty=tty))
        for _ in range(200):
            h.flush()
            if d.called:
                break
            h.clock.advance(0.5)
        self.uris = uris
        return self.successResultOf(d), out.getvalue(), err.getvalue()

    def test_list(self) -> None:
        """
        C{list --all} prints the table and a blank line, exit 0; the
        connection is closed afterwards.
        """
        code, out, err = self.invoke("-c", "qemu+tcp://h/system", "list", "--all")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, " Id   Name   State\n-----------------------\n"
                              " 1    rt1    running\n -    rt2    shut off\n\n")
        self.assertEqual(self.uris, ["qemu+tcp://h/system"])
        self.assertEqual(self.h.server.procs()[-1], 2)

    def test_list_json(self) -> None:
        """
        C{list --json} (active only) prints one JSON document.
        """
        code, out, _ = self.invoke("-c", "qemu+tcp://h/system", "list", "--json")
        self.assertEqual(code, 0)
        self.assertEqual([d["name"] for d in json.loads(out)], ["rt1"])

    def test_default_uri(self) -> None:
        """
        Without C{-c} the default URI is used.
        """
        code, _, _ = self.invoke("hostname")
        self.assertEqual(code, 0)
        self.assertIn(self.uris[0], ("qemud:///system", "qemud:///session"))

    def test_queries(self) -> None:
        """
        dominfo, domstate --reason, domid, domuuid, domname, hostname, uri,
        nodeinfo, version and dumpxml, in text and JSON.
        """
        c = ("-c", "qemu+tcp://h/system")
        self.assertIn("State:          running\n", self.invoke(*c, "dominfo", "rt1")[1])
        self.assertEqual(json.loads(self.invoke(*c, "dominfo", "--json", "rt2")[1])["state"],
                         "shut off")
        self.assertEqual(self.invoke(*c, "domstate", "--reason", "rt1")[1], "running (booted)\n\n")
        self.assertEqual(json.loads(self.invoke(*c, "domstate", "--json", "rt1")[1])["reason"],
                         "booted")
        self.assertEqual(self.invoke(*c, "domid", "rt1")[1], "1\n\n")
        self.assertEqual(self.invoke(*c, "domid", "rt2")[1], "-\n\n")
        self.assertEqual(json.loads(self.invoke(*c, "domid", "--json", "rt2")[1]), {"id": None})
        self.assertEqual(self.invoke(*c, "domuuid", "rt1")[1],
                         "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b\n\n")
        self.assertEqual(self.invoke(*c, "domname", "1")[1], "rt1\n\n")
        self.assertEqual(
            self.invoke(*c, "domname", "8a3f5c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b")[1], "rt1\n\n")
        self.assertEqual(self.invoke(*c, "hostname")[1], "vm\n\n")
        self.assertEqual(json.loads(self.invoke(*c, "uri", "--json")[1]),
                         {"uri": "qemu+tcp://h/system"})
        self.assertIn("CPU frequency:       2596 MHz\n", self.invoke(*c, "nodeinfo")[1])
        self.assertIn("Running against daemon: 9.0.0",
                      self.invoke(*c, "version", "--daemon")[1])
        self.assertEqual(json.loads(self.invoke(*c, "version", "--json")[1])["daemon_version"],
                         "9.0.0")
        self.assertIn("flags 2", self.invoke(*c, "dumpxml", "--inactive", "rt1")[1])
        self.assertEqual(json.loads(self.invoke(*c, "dumpxml", "--json", "rt1")[1])["name"], "rt1")
        self.assertEqual(json.loads(self.invoke(*c, "capabilities", "--json")[1]),
                         {"capabilities": "<capabilities/>"})

    def test_lifecycle_messages(self) -> None:
        """
        define, start, suspend, destroy, autostart and undefine print
        virsh's messages.
        """
        doms = Harness().server.domains
        xml = self.mktemp()
        with open(xml, "w") as f:
            f.write("<domain><name>new1</name></domain>")
        c = ("-c", "qemu+tcp://h/system")
        self.assertEqual(self.invoke(*c, "define", xml, domains=doms)[1],
                         f"Domain 'new1' defined from {xml}\n\n")
        self.assertEqual(self.invoke(*c, "start", "new1", h=Harness())[0], 1)
        self.assertEqual(self.invoke(*c, "start", "rt2", domains=doms)[1], "Domain 'rt2' started\n\n")
        self.assertEqual(self.invoke(*c, "suspend", "rt2", domains=doms)[1], "Domain 'rt2' suspended\n\n")
        self.assertEqual(self.invoke(*c, "domstate", "--reason", "rt2", domains=doms)[1],
                         "paused (user)\n\n")
        self.assertEqual(self.invoke(*c, "destroy", "rt2", domains=doms)[1], "Domain 'rt2' destroyed\n\n")
        self.assertEqual(self.invoke(*c, "autostart", "rt2", domains=doms)[1],
                         "Domain 'rt2' marked as autostarted\n\n")
        self.assertEqual(self.invoke(*c, "autostart", "--disable", "rt2", domains=doms)[1],
                         "Domain 'rt2' unmarked as autostarted\n\n")
        self.assertEqual(self.invoke(*c, "undefine", "new1", domains=doms)[1],
                         "Domain 'new1' has been undefined\n\n")

    def test_errors(self) -> None:
        """
        A failing command prints virsh-style C{error:} lines with the
        daemon's message on stderr and exits 1.
        """
        code, out, err = self.invoke("-c", "qemu+tcp://h/system", "dominfo", "nosuchdomain")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "error: failed to get domain 'nosuchdomain'\n"
                              "error: Domain not found: no domain with matching name "
                              "'nosuchdomain'\n")
        code, _, err = self.invoke("-c", "qemu+tcp://h/system", "destroy", "rt2")
        self.assertEqual(code, 1)
        self.assertEqual(err, "error: Failed to destroy domain 'rt2'\n"
                              "error: Requested operation is not valid: domain is not running\n")
        code, _, err = self.invoke("-c", "qemu+tcp://h/system", "define", "/nonexistent/x.xml")
        self.assertEqual(code, 1)
        self.assertIn("error: Failed to open file '/nonexistent/x.xml'", err)

    def test_readonly(self) -> None:
        """
        C{-r} opens read-only; state changes are refused with the daemon's
        wording.
        """
        code, _, err = self.invoke("-r", "-c", "qemu+tcp://h/system", "start", "rt2")
        self.assertEqual(code, 1)
        self.assertEqual(err, "error: Failed to start domain 'rt2'\n"
                              "error: operation forbidden: read only access prevents "
                              "virDomainCreate\n")
        self.assertEqual(tuple(self.h.server.calls[2][1]), ("qemu:///system", 1))

    def test_usage_error(self) -> None:
        """
        Unknown commands and missing arguments exit 2 without connecting.
        """
        out, err = io.StringIO(), io.StringIO()

        def connect(*a: Any, **kw: Any) -> Deferred[Any]:
            raise AssertionError("must not connect")

        for argv in (["frobnicate"], ["start"], [], ["list", "--bogus"]):
            d = ensureDeferred(cli.run(None, argv, out=out, err=err, connect_fn=connect))
            self.assertEqual(self.successResultOf(d), 2)

    def test_connect_failure(self) -> None:
        """
        A connection failure prints the cause and exits 1.
        """
        from qemudclient.errors import ConnectFailed
        from twisted.python.failure import Failure

        def connect(*a: Any, **kw: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            d.errback(ConnectFailed("/run/x", Failure(FileNotFoundError(2, "No such file"))))
            return d

        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(cli.run(None, ["list"], out=out, err=err, connect_fn=connect,
                                   environ={}))
        self.assertEqual(self.successResultOf(d), 1)
        self.assertTrue(err.getvalue().startswith(
            "error: failed to connect to the hypervisor\nerror: Failed to connect to '/run/x'"))

    def test_events(self) -> None:
        """
        C{events --loop --timeout} prints each event (text), then virsh's
        summary; C{--json} streams one object per line and no summary.
        """
        h = Harness()
        h.server.domains[1].id = -1
        out, err = io.StringIO(), io.StringIO()

        def connect(uri: str, reactor: Any, readonly: bool = False) -> Deferred[Any]:
            return h.open(uri=uri)

        d = ensureDeferred(cli.run(h.clock, ["-c", "qemu+tcp://h/system", "events", "--loop",
                                             "--timeout", "10"],
                                   out=out, err=err, connect_fn=connect))
        h.flush()
        h.server.emit(0, h.server.domains[1], 2, 0)
        h.server.emit(0, h.server.domains[1], 5, 1)
        h.flush()
        self.assertNoResult(d)
        h.clock.advance(10)
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(out.getvalue(),
                         "event 'lifecycle' for domain 'rt2': Started Booted\n"
                         "event 'lifecycle' for domain 'rt2': Stopped Destroyed\n"
                         "event loop timed out\nevents received: 2\n\n")
        self.assertEqual(h.server.callbacks, {})

        h = Harness()
        out = io.StringIO()
        d = ensureDeferred(cli.run(h.clock, ["-c", "qemu+tcp://h/system", "events", "--json",
                                             "--domain", "rt1"],
                                   out=out, err=err, connect_fn=connect))
        h.flush()
        self.assertEqual(tuple(h.server.calls[-1][1])[1][0], "rt1")
        h.server.emit(0, h.server.domains[0], 3, 0)
        h.flush()
        self.assertEqual(self.successResultOf(d), 0)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        doc = json.loads(lines[0])
        self.assertEqual((doc["type"], doc["detail"], doc["domain"]["name"]),
                         ("Suspended", "Paused", "rt1"))

    def test_shutdown_wait(self) -> None:
        """
        C{shutdown --wait} polls until the domain is shut off, drawing a
        progress line on a terminal; C{--timeout} gives up with exit 1.
        """
        from qemud.rpc import remote

        h = Harness()
        polls: list[int] = []

        def state(a: Any) -> Any:
            polls.append(1)
            return (5, 1) if len(polls) >= 3 else (1, 1)

        h.server.handlers[remote.PROC.DOMAIN_SHUTDOWN] = lambda a: None
        h.server.handlers[remote.PROC.DOMAIN_GET_STATE] = state
        code, out, err = self.invoke("-c", "qemu+tcp://h/system", "shutdown", "--wait", "rt1",
                                     tty=True, h=h)
        self.assertEqual(code, 0)
        self.assertEqual(out, "Domain 'rt1' is being shutdown\n\nDomain 'rt1' is shut off\n")
        self.assertIn("\rWaiting for domain 'rt1' to shut down", err)

        h = Harness()
        h.server.handlers[remote.PROC.DOMAIN_SHUTDOWN] = lambda a: None
        code, out, err = self.invoke("-c", "qemu+tcp://h/system", "shutdown", "--wait",
                                     "--timeout", "2", "rt1", h=h)
        self.assertEqual(code, 1)
        self.assertEqual(err, "error: Timed out during operation: domain 'rt1' did not shut "
                              "down in 2 s\n")

    def test_save_progress(self) -> None:
        """
        C{save} polls the job info every half second for a progress line on
        a terminal, and draws nothing when stderr is not one.
        """
        from qemud.rpc import remote

        for tty in (True, False):
            h = Harness()
            h.server.handlers[remote.PROC.DOMAIN_SAVE] = lambda a: None
            h.server.handlers[remote.PROC.DOMAIN_GET_JOB_INFO] = lambda a: (
                1, 0, 0, 100, 40, 60, 0, 0, 0, 0, 0, 0)
            h.server.hold_procs.add(remote.PROC.DOMAIN_SAVE)
            out, err = io.StringIO(), io.StringIO()

            def connect(uri: str, reactor: Any, readonly: bool = False,
                        h: Harness = h) -> Deferred[Any]:
                return h.open(uri=uri)

            d = ensureDeferred(cli.run(h.clock, ["-c", "qemu+tcp://h/system", "save", "rt1",
                                                 "/tmp/x.save"],
                                       out=out, err=err, connect_fn=connect, tty=tty))
            h.flush()
            self.assertEqual(len(h.server.held), 1)
            h.clock.advance(0.5)
            h.flush()
            self.assertNoResult(d)
            polled = h.server.procs().count(remote.PROC.DOMAIN_GET_JOB_INFO)
            self.assertEqual(polled, 1 if tty else 0)
            h.server.release()
            h.flush()
            h.clock.advance(0.5)
            h.flush()
            self.assertEqual(self.successResultOf(d), 0)
            saves = [a for p, a in h.server.calls if p == remote.PROC.DOMAIN_SAVE]
            self.assertEqual([a.to for a in saves], ["/tmp/x.save"])
            self.assertEqual(out.getvalue(), "\nDomain 'rt1' saved to /tmp/x.save\n\n")
            if tty:
                self.assertIn("\rSave: [ 40 %]", err.getvalue())
                self.assertTrue(err.getvalue().endswith("\rSave: [100 %]\n"))
            else:
                self.assertEqual(err.getvalue(), "")

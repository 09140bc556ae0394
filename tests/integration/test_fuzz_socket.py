"""
Fuzz a real C{twistd -n qemud} over its UNIX socket with random bytes and
mutated real client frames from C{shared/wire-traces} (bit flips,
truncations, length words, header fields, swapped words, random procedure
numbers with real payloads, splices, extreme XDR lengths), one short
connection per input, while a control client on a persistent connection
keeps calling.

The run is bounded (C{QEMUD_FUZZ_SECONDS}, default 40 s) and seeded
(C{QEMUD_FUZZ_SEED}); C{benchmarks/fuzz_socket.py} is the long run.
Procedures that start guests or touch paths from the payload are never
sent (L{tests.integration.faults.FUZZ_DENIED_PROCS}).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.daemon import (
    DaemonProcess,
    daemon_logs_on_failure,  # noqa: F401  (autouse fixture)
)
from tests.integration.faults import (
    FrameCorpus,
    FuzzRun,
    Mutator,
    RPCClient,
    domain_xml,
    log_problems,
)

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("QEMUD_FUZZ_SECONDS", "40"))
SEED = int(os.environ.get("QEMUD_FUZZ_SEED", "1126"))


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """
    A fresh daemon with two defined (not running) domains: one the control
    client looks up, one the typed fuzz calls name (and may change).
    """
    d = DaemonProcess("--no-autostart")
    with d:
        with RPCClient(d.socket).open() as c:
            c.define(domain_xml("fuzz-control", "6f1b8a52-4c1e-4d7a-9a57-1c0ffee00001"))
            c.define(Mutator.target_xml_for("fuzz-target"))
        yield d


class SocketFuzzTests:
    """
    Whatever arrives on a connection, the daemon answers or closes that
    connection only.
    """

    def test_fuzz(self, daemon: DaemonProcess) -> None:
        """
        Thousands of fuzz inputs over short connections: the daemon stays
        alive, logs no unhandled error or traceback, and every call of the
        control client succeeds with a latency under 2 s.
        """
        corpus = FrameCorpus.from_shared()
        run = FuzzRun(daemon.socket, daemon.root, corpus, SEED, alive=daemon.alive)
        stats = run.run(SECONDS)
        print(f"\nfuzz seed {SEED}: {stats.inputs} inputs in {stats.seconds:.1f} s "
              f"({stats.rate:.0f}/s), {stats.replies} answered, {stats.closed_by_daemon} "
              f"closed by the daemon; control: {stats.control_calls} calls, max latency "
              f"{stats.control_max_latency * 1000:.0f} ms")
        report = "\n\n".join(f"{f.what}\ninput: {f.input}\n{f.detail}"
                             for f in stats.findings)
        assert not stats.findings, f"{len(stats.findings)} findings:\n{report}"
        assert daemon.alive()
        assert not stats.control_failures, stats.control_failures
        assert stats.control_calls > 0
        assert stats.control_max_latency < 2.0, stats.control_max_latency
        assert stats.inputs >= 1000, stats.inputs
        assert len(stats.kinds) == len(run.mutator.kinds), stats.kinds
        with RPCClient(daemon.socket).open() as c:
            assert "fuzz-control" in c.list_all()
        assert not log_problems(daemon.root)

# -*- test-case-name: tests.client.test_cli -*-
"""
Plain values the client hands back, and libvirt's names for its numbers.

Nothing here does I/O; the CLI formats these, the tests build them by hand.
"""

from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any

# virDomainState
STATE_NOSTATE = 0
STATE_RUNNING = 1
STATE_BLOCKED = 2
STATE_PAUSED = 3
STATE_SHUTDOWN = 4
STATE_SHUTOFF = 5
STATE_CRASHED = 6
STATE_PMSUSPENDED = 7

#: virsh's words for each state (C{virshDomainStateToString}).
STATE_NAMES: dict[int, str] = {
    STATE_NOSTATE: "no state",
    STATE_RUNNING: "running",
    STATE_BLOCKED: "idle",
    STATE_PAUSED: "paused",
    STATE_SHUTDOWN: "in shutdown",
    STATE_SHUTOFF: "shut off",
    STATE_CRASHED: "crashed",
    STATE_PMSUSPENDED: "pmsuspended",
}

#: virsh's words for the reason of each state (C{virshDomainStateReasonToString}).
REASON_NAMES: dict[int, tuple[str, ...]] = {
    STATE_NOSTATE: ("unknown",),
    STATE_RUNNING: (
        "unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
        "migration canceled", "save canceled", "event wakeup", "crashed", "post-copy",
        "post-copy failed",
    ),
    STATE_BLOCKED: ("unknown",),
    STATE_PAUSED: (
        "unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog",
        "from snapshot", "shutting down", "creating snapshot", "crashed", "starting up",
        "post-copy", "post-copy failed",
    ),
    STATE_SHUTDOWN: ("unknown", "user"),
    STATE_SHUTOFF: (
        "unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
        "from snapshot", "daemon",
    ),
    STATE_CRASHED: ("unknown", "panicked"),
    STATE_PMSUSPENDED: ("unknown",),
}

#: Lifecycle event types and their details, as C{virsh event} prints them.
LIFECYCLE_NAMES: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("Defined", ("Added", "Updated", "Renamed", "Snapshot")),
    1: ("Undefined", ("Removed", "Renamed")),
    2: ("Started", ("Booted", "Migrated", "Restored", "Snapshot", "Event wakeup")),
    3: ("Suspended", ("Paused", "Migrated", "I/O Error", "Watchdog", "Restored", "Snapshot",
                      "API error", "Post-copy", "Post-copy Error")),
    4: ("Resumed", ("Unpaused", "Migrated", "Snapshot", "Post-copy", "Post-copy Error")),
    5: ("Stopped", ("Shutdown", "Destroyed", "Crashed", "Migrated", "Saved", "Failed",
                    "Snapshot")),
    6: ("Shutdown", ("Finished", "Finished after guest request", "Finished after host request")),
    7: ("PMSuspended", ("Memory", "Disk")),
    8: ("Crashed", ("Panicked", "Crashloaded")),
}

#: Event IDs (C{virDomainEventID}) by the names C{virsh event --event} takes.
EVENT_IDS: dict[str, int] = {
    "lifecycle": 0, "reboot": 1, "rtc-change": 2, "watchdog": 3, "io-error": 4,
    "graphics": 5, "io-error-reason": 6, "control-error": 7, "block-job": 8,
    "disk-change": 9, "tray-change": 10, "pm-wakeup": 11, "pm-suspend": 12,
    "balloon-change": 13, "pm-suspend-disk": 14, "device-removed": 15, "block-job-2": 16,
    "tunable": 17, "agent-lifecycle": 18, "device-added": 19, "migration-iteration": 20,
    "job-completed": 21, "device-removal-failed": 22, "metadata-change": 23,
    "block-threshold": 24, "memory-failure": 25, "memory-device-size-change": 26,
}
EVENT_NAMES: dict[int, str] = {v: k for k, v in EVENT_IDS.items()}


def state_name(state: int) -> str:
    """
    @return: virsh's word for C{state} (C{"running"}, C{"shut off"}, ...).
    """
    return STATE_NAMES.get(state, "no state")


def reason_name(state: int, reason: int) -> str:
    """
    @return: virsh's word for C{reason} in C{state} (C{"booted"}, ...).
    """
    names = REASON_NAMES.get(state, ("unknown",))
    return names[reason] if 0 <= reason < len(names) else "unknown"


def lifecycle_names(event: int, detail: int) -> tuple[str, str]:
    """
    @return: C{("Started", "Booted")} style names of a lifecycle event.
    """
    kind, details = LIFECYCLE_NAMES.get(event, ("Unknown", ()))
    return kind, details[detail] if 0 <= detail < len(details) else "Unknown"


@dataclass(frozen=True)
class DomainRef:
    """
    A domain as the protocol names it (C{remote_nonnull_domain}).

    @ivar name: the domain's name.
    @ivar uuid: its 16 raw UUID bytes.
    @ivar id: its id while running, C{-1} otherwise.
    """

    name: str
    uuid: bytes
    id: int

    @property
    def uuid_string(self) -> str:
        """
        @return: the UUID in its usual C{8-4-4-4-12} text form.
        """
        return str(_uuid.UUID(bytes=self.uuid))


@dataclass(frozen=True)
class NodeInfo:
    """
    C{NODE_GET_INFO}: the host.

    @ivar model: CPU model (C{"x86_64"}).
    @ivar memory: memory size in KiB.
    @ivar cpus: active CPUs.
    @ivar mhz: CPU frequency.
    @ivar nodes: NUMA cells.
    @ivar sockets: sockets per node.
    @ivar cores: cores per socket.
    @ivar threads: threads per core.
    """

    model: str
    memory: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int


@dataclass(frozen=True)
class DomainInfo:
    """
    C{DOMAIN_GET_INFO}: a domain's state and resources.

    @ivar state: the C{virDomainState} number.
    @ivar max_mem: maximum memory in KiB.
    @ivar memory: current memory in KiB.
    @ivar vcpus: number of virtual CPUs.
    @ivar cpu_time: CPU time used, in nanoseconds.
    """

    state: int
    max_mem: int
    memory: int
    vcpus: int
    cpu_time: int


@dataclass(frozen=True)
class JobInfo:
    """
    C{DOMAIN_GET_JOB_INFO}: progress of a long operation (save, migrate).

    @ivar type: 0 none, 1 bounded, 2 unbounded, 3 completed, 4 failed,
        5 cancelled.
    """

    type: int
    time_elapsed: int
    time_remaining: int
    data_total: int
    data_processed: int
    data_remaining: int
    mem_total: int
    mem_processed: int
    mem_remaining: int
    file_total: int
    file_processed: int
    file_remaining: int


@dataclass(frozen=True)
class DomainEvent:
    """
    One domain event.

    @ivar event_id: libvirt's event ID (0 lifecycle, 1 reboot, ...).
    @ivar domain: the domain, with its id at the time of the event.
    @ivar detail: the event's fields: C{event} and C{detail} for
        lifecycle, C{dev_alias} (and C{reason}) for device and tray events,
        C{iteration} for migration iterations, nothing for reboot.
    @ivar timestamp: when the client received it (reactor seconds).
    @ivar callback_id: the daemon's callback ID it was delivered for.
    """

    event_id: int
    domain: DomainRef
    detail: dict[str, Any] = field(default_factory=dict)
    timestamp: float = 0.0
    callback_id: int = -1

    @property
    def name(self) -> str:
        """
        @return: the event's name as C{virsh event} prints it (C{"lifecycle"}).
        """
        return EVENT_NAMES.get(self.event_id, str(self.event_id))

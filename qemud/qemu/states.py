# -*- test-case-name: tests.qemu.test_guest -*-
"""
libvirt's domain states, state reasons, lifecycle events and event details.

The numbers are libvirt 9.0's (C{virDomainState}, C{virDomain*Reason},
C{virDomainEventType}, C{virDomainEvent*DetailType}); they go on the wire
unchanged, so they must never be renumbered.  Every reason and detail enum is
interpreted relative to its state or event.

This module is pure (standard library only).
"""

from __future__ import annotations

from enum import IntEnum


class DomainState(IntEnum):
    """C{virDomainState}."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4  # being shut down
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7


class RunningReason(IntEnum):
    """C{virDomainRunningReason}."""

    UNKNOWN = 0
    BOOTED = 1
    MIGRATED = 2
    RESTORED = 3
    FROM_SNAPSHOT = 4
    UNPAUSED = 5
    MIGRATION_CANCELED = 6
    SAVE_CANCELED = 7
    WAKEUP = 8
    CRASHED = 9
    POSTCOPY = 10
    POSTCOPY_FAILED = 11


class PausedReason(IntEnum):
    """C{virDomainPausedReason}."""

    UNKNOWN = 0
    USER = 1
    MIGRATION = 2
    SAVE = 3
    DUMP = 4
    IOERROR = 5
    WATCHDOG = 6
    FROM_SNAPSHOT = 7
    SHUTTING_DOWN = 8
    SNAPSHOT = 9
    CRASHED = 10
    STARTING_UP = 11
    POSTCOPY = 12
    POSTCOPY_FAILED = 13


class ShutdownReason(IntEnum):
    """C{virDomainShutdownReason} (state SHUTDOWN: shutting down)."""

    UNKNOWN = 0
    USER = 1


class ShutoffReason(IntEnum):
    """C{virDomainShutoffReason}."""

    UNKNOWN = 0
    SHUTDOWN = 1
    DESTROYED = 2
    CRASHED = 3
    MIGRATED = 4
    SAVED = 5
    FAILED = 6
    FROM_SNAPSHOT = 7
    DAEMON = 8


class CrashedReason(IntEnum):
    """C{virDomainCrashedReason}."""

    UNKNOWN = 0
    PANICKED = 1


class LifecycleEvent(IntEnum):
    """C{virDomainEventType}: the C{event} of a lifecycle message."""

    DEFINED = 0
    UNDEFINED = 1
    STARTED = 2
    SUSPENDED = 3
    RESUMED = 4
    STOPPED = 5
    SHUTDOWN = 6
    PMSUSPENDED = 7
    CRASHED = 8


class DefinedDetail(IntEnum):
    """C{virDomainEventDefinedDetailType}."""

    ADDED = 0
    UPDATED = 1
    RENAMED = 2
    FROM_SNAPSHOT = 3


class UndefinedDetail(IntEnum):
    """C{virDomainEventUndefinedDetailType}."""

    REMOVED = 0
    RENAMED = 1


class StartedDetail(IntEnum):
    """C{virDomainEventStartedDetailType}."""

    BOOTED = 0
    MIGRATED = 1
    RESTORED = 2
    FROM_SNAPSHOT = 3
    WAKEUP = 4


class SuspendedDetail(IntEnum):
    """C{virDomainEventSuspendedDetailType}."""

    PAUSED = 0
    MIGRATED = 1
    IOERROR = 2
    WATCHDOG = 3
    RESTORED = 4
    FROM_SNAPSHOT = 5
    API_ERROR = 6
    POSTCOPY = 7
    POSTCOPY_FAILED = 8


class ResumedDetail(IntEnum):
    """C{virDomainEventResumedDetailType}."""

    UNPAUSED = 0
    MIGRATED = 1
    FROM_SNAPSHOT = 2
    POSTCOPY = 3
    POSTCOPY_FAILED = 4


class StoppedDetail(IntEnum):
    """C{virDomainEventStoppedDetailType}."""

    SHUTDOWN = 0
    DESTROYED = 1
    CRASHED = 2
    MIGRATED = 3
    SAVED = 4
    FAILED = 5
    FROM_SNAPSHOT = 6


class ShutdownDetail(IntEnum):
    """C{virDomainEventShutdownDetailType}."""

    FINISHED = 0
    GUEST = 1
    HOST = 2


class PMSuspendedDetail(IntEnum):
    """C{virDomainEventPMSuspendedDetailType}."""

    MEMORY = 0
    DISK = 1


class CrashedDetail(IntEnum):
    """C{virDomainEventCrashedDetailType}."""

    PANICKED = 0
    CRASHLOADED = 1


class EventID(IntEnum):
    """C{virDomainEventID}: which callback family an event belongs to."""

    LIFECYCLE = 0
    REBOOT = 1
    RTC_CHANGE = 2
    WATCHDOG = 3
    IO_ERROR = 4
    GRAPHICS = 5
    IO_ERROR_REASON = 6
    CONTROL_ERROR = 7
    BLOCK_JOB = 8
    DISK_CHANGE = 9
    TRAY_CHANGE = 10
    PMWAKEUP = 11
    PMSUSPEND = 12
    BALLOON_CHANGE = 13
    PMSUSPEND_DISK = 14
    DEVICE_REMOVED = 15
    BLOCK_JOB_2 = 16
    TUNABLE = 17
    AGENT_LIFECYCLE = 18
    DEVICE_ADDED = 19
    MIGRATION_ITERATION = 20
    JOB_COMPLETED = 21
    DEVICE_REMOVAL_FAILED = 22
    METADATA_CHANGE = 23
    BLOCK_THRESHOLD = 24
    MEMORY_FAILURE = 25
    MEMORY_DEVICE_SIZE_CHANGE = 26


class TrayChangeReason(IntEnum):
    """C{virDomainEventTrayChangeReason}."""

    OPEN = 0
    CLOSE = 1


def is_active(state: int) -> bool:
    """
    @param state: a L{DomainState} value.
    @return: whether a domain in C{state} has a QEMU process.
    """
    return state not in (DomainState.SHUTOFF, DomainState.NOSTATE)

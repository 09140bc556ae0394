# -*- test-case-name: tests.client.test_connection -*-
"""
The procedures the client calls and the event messages it decodes, taken
from L{qemud.rpc.remote} (the one description of the protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qemud.rpc import remote

Procedure = remote.Procedure


def _proc(name: str) -> Procedure:
    proc = remote.PROCEDURES[getattr(remote.PROC, name)]
    if proc.args is None or proc.ret is None:  # pragma: no cover - table check
        raise ImportError(f"qemud.rpc.remote has no layout for {name}")
    return proc


AUTH_LIST = _proc("AUTH_LIST")
CONNECT_OPEN = _proc("CONNECT_OPEN")
CONNECT_CLOSE = _proc("CONNECT_CLOSE")
CONNECT_SUPPORTS_FEATURE = _proc("CONNECT_SUPPORTS_FEATURE")
CONNECT_GET_TYPE = _proc("CONNECT_GET_TYPE")
CONNECT_GET_VERSION = _proc("CONNECT_GET_VERSION")
CONNECT_GET_LIB_VERSION = _proc("CONNECT_GET_LIB_VERSION")
CONNECT_GET_HOSTNAME = _proc("CONNECT_GET_HOSTNAME")
CONNECT_GET_URI = _proc("CONNECT_GET_URI")
CONNECT_GET_CAPABILITIES = _proc("CONNECT_GET_CAPABILITIES")
NODE_GET_INFO = _proc("NODE_GET_INFO")
CONNECT_LIST_ALL_DOMAINS = _proc("CONNECT_LIST_ALL_DOMAINS")
DOMAIN_LOOKUP_BY_NAME = _proc("DOMAIN_LOOKUP_BY_NAME")
DOMAIN_LOOKUP_BY_UUID = _proc("DOMAIN_LOOKUP_BY_UUID")
DOMAIN_LOOKUP_BY_ID = _proc("DOMAIN_LOOKUP_BY_ID")
DOMAIN_DEFINE_XML = _proc("DOMAIN_DEFINE_XML")
DOMAIN_CREATE_XML = _proc("DOMAIN_CREATE_XML")
DOMAIN_CREATE = _proc("DOMAIN_CREATE")
DOMAIN_CREATE_WITH_FLAGS = _proc("DOMAIN_CREATE_WITH_FLAGS")
DOMAIN_DESTROY = _proc("DOMAIN_DESTROY")
DOMAIN_SHUTDOWN = _proc("DOMAIN_SHUTDOWN")
DOMAIN_REBOOT = _proc("DOMAIN_REBOOT")
DOMAIN_RESET = _proc("DOMAIN_RESET")
DOMAIN_SUSPEND = _proc("DOMAIN_SUSPEND")
DOMAIN_RESUME = _proc("DOMAIN_RESUME")
DOMAIN_UNDEFINE_FLAGS = _proc("DOMAIN_UNDEFINE_FLAGS")
DOMAIN_GET_XML_DESC = _proc("DOMAIN_GET_XML_DESC")
DOMAIN_GET_INFO = _proc("DOMAIN_GET_INFO")
DOMAIN_GET_STATE = _proc("DOMAIN_GET_STATE")
DOMAIN_GET_OS_TYPE = _proc("DOMAIN_GET_OS_TYPE")
DOMAIN_IS_ACTIVE = _proc("DOMAIN_IS_ACTIVE")
DOMAIN_IS_PERSISTENT = _proc("DOMAIN_IS_PERSISTENT")
DOMAIN_GET_AUTOSTART = _proc("DOMAIN_GET_AUTOSTART")
DOMAIN_SET_AUTOSTART = _proc("DOMAIN_SET_AUTOSTART")
DOMAIN_HAS_MANAGED_SAVE_IMAGE = _proc("DOMAIN_HAS_MANAGED_SAVE_IMAGE")
DOMAIN_SAVE = _proc("DOMAIN_SAVE")
DOMAIN_RESTORE = _proc("DOMAIN_RESTORE")
DOMAIN_MANAGED_SAVE = _proc("DOMAIN_MANAGED_SAVE")
DOMAIN_ATTACH_DEVICE = _proc("DOMAIN_ATTACH_DEVICE")
DOMAIN_ATTACH_DEVICE_FLAGS = _proc("DOMAIN_ATTACH_DEVICE_FLAGS")
DOMAIN_DETACH_DEVICE = _proc("DOMAIN_DETACH_DEVICE")
DOMAIN_DETACH_DEVICE_FLAGS = _proc("DOMAIN_DETACH_DEVICE_FLAGS")
DOMAIN_UPDATE_DEVICE_FLAGS = _proc("DOMAIN_UPDATE_DEVICE_FLAGS")
DOMAIN_GET_JOB_INFO = _proc("DOMAIN_GET_JOB_INFO")
CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY = _proc("CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY")
CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY = _proc(
    "CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY"
)

#: A decoded event: C{(callback_id, event_id, dom, detail)}.
Decoded = tuple[int, int, Any, dict[str, Any]]

def _lifecycle(m: Any) -> Decoded:
    return m.callbackID, 0, m.msg.dom, {"event": m.msg.event, "detail": m.msg.detail}


def _reboot(m: Any) -> Decoded:
    return m.callbackID, 1, m.msg.dom, {}


def _tray(m: Any) -> Decoded:
    return m.callbackID, 10, m.msg.dom, {"dev_alias": m.msg.devAlias, "reason": m.msg.reason}


def _removed(m: Any) -> Decoded:
    return m.callbackID, 15, m.msg.dom, {"dev_alias": m.msg.devAlias}


def _added(m: Any) -> Decoded:
    return m.callbackID, 19, m.dom, {"dev_alias": m.devAlias}


def _iteration(m: Any) -> Decoded:
    return m.callbackID, 20, m.dom, {"iteration": m.iteration}


def _job(m: Any) -> Decoded:
    return m.callbackID, 21, m.dom, {"params": {p.field: p.value[1] for p in m.params}}


_CONVERT: dict[int, Callable[[Any], Decoded]] = {
    318: _lifecycle,
    319: _reboot,
    328: _tray,
    333: _removed,
    354: _added,
    359: _iteration,
    363: _job,
}


def _decoder(proc: int, convert: Callable[[Any], Decoded]) -> Callable[[bytes], Decoded]:
    layout = remote.MESSAGES[proc]

    def decode(payload: bytes) -> Decoded:
        return convert(layout.unpack(payload))

    return decode


EVENTS: dict[int, Callable[[bytes], Decoded]] = {
    proc: _decoder(proc, convert) for proc, convert in _CONVERT.items()
}
"""Callback-mode event decoders by message procedure number."""

"""
The whole domain lifecycle through libvirt-python, with lifecycle events.

Run with /usr/bin/python3 (python3-libvirt):

    lifecycle.py URI PERSISTENT_XML_FILE TRANSIENT_XML_FILE

Prints one JSON object on stdout: the results of each call, the events
received (name, event, detail), and any error.  Exit 0 when every call
succeeded.
"""

import json
import sys
import threading
import time

import libvirt


def main():
    uri, xml_path, xml2_path = sys.argv[1:4]
    with open(xml_path) as f:
        xml = f.read()
    with open(xml2_path) as f:
        xml2 = f.read()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    libvirt.virEventRegisterDefaultImpl()

    def loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, daemon=True).start()
    events = []
    lock = threading.Lock()

    def cb(conn, dom, event, detail, opaque):
        with lock:
            events.append([dom.name(), event, detail])

    out = {"steps": []}

    def step(label, value):
        out["steps"].append(label)
        out[label] = value

    def wait_events(count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if len(events) >= count:
                    return
            time.sleep(0.02)

    try:
        c = libvirt.open(uri)
        cbid = c.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
        step("version", c.getVersion())
        step("libversion", c.getLibVersion())
        step("hostname", c.getHostname())
        step("info", c.getInfo())
        step("caps", c.getCapabilities())
        step("list_before", [d.name() for d in c.listAllDomains()])
        d = c.defineXML(xml)
        step("defined", [d.name(), d.UUIDString(), d.ID()])
        step("byname", c.lookupByName(d.name()).name())
        step("byuuid", c.lookupByUUIDString(d.UUIDString()).name())
        step("info_inactive", d.info())
        step("state_inactive", d.state())
        step("is_active_before", d.isActive())
        step("persistent", d.isPersistent())
        d.create()
        step("after_create", [d.ID(), d.state()])
        step("byid", c.lookupByID(d.ID()).name())
        try:
            d.create()
            step("create_running", "ok")
        except libvirt.libvirtError as e:
            step("create_running", [e.get_error_code(), str(e)])
        step("info_running", d.info())
        step("xml_running", d.XMLDesc(0))
        step("xml_inactive", d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        step("list_running", [[x.name(), x.ID()] for x in c.listAllDomains()])
        d.suspend()
        step("suspended", d.state())
        d.resume()
        step("resumed", d.state())
        d.destroy()
        step("destroyed", d.state())
        t = c.createXML(xml2, 0)
        step("transient", [t.name(), t.ID() > 0, t.isPersistent(), t.state()])
        t.destroy()
        try:
            c.lookupByName(t.name())
            step("transient_after_destroy", "still there")
        except libvirt.libvirtError as e:
            step("transient_after_destroy", [e.get_error_code(), str(e)])
        try:
            c.lookupByName("nosuch")
            step("nosuch", "found")
        except libvirt.libvirtError as e:
            step("nosuch", [e.get_error_code(), e.get_error_domain(), str(e)])
        try:
            d.resume()
            step("resume_stopped", "ok")
        except libvirt.libvirtError as e:
            step("resume_stopped", [e.get_error_code(), str(e)])
        d.undefine()
        step("undefined", True)
        step("list_after", [x.name() for x in c.listAllDomains()])
        wait_events(12)
        time.sleep(0.3)
        c.domainEventDeregisterAny(cbid)
        c.close()
        rc = 0
    except libvirt.libvirtError as e:
        out["error"] = [e.get_error_code(), str(e)]
        rc = 1
    with lock:
        out["events"] = list(events)
    print(json.dumps(out))
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""
Read-only libvirt-python connection: queries work, changes are refused.

Run with /usr/bin/python3:   readonly.py URI NAME [open]

With C{open}, the connection is made with libvirt.open() (not
openReadOnly): on the daemon's read-only socket the server must then refuse
by itself.

Prints JSON: the list of domains, NAME's state, and for create() and
suspend()/destroy()/undefine()/setAutostart() the error code and message
(or "ok" when the call wrongly succeeded).
"""

import json
import sys

import libvirt


def main():
    uri, name = sys.argv[1:3]
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    if sys.argv[3:] == ["open"]:
        c = libvirt.open(uri)
    else:
        c = libvirt.openReadOnly(uri)
    out = {"list": [d.name() for d in c.listAllDomains()]}
    d = c.lookupByName(name)
    out["state"] = d.state()
    out["xml"] = len(d.XMLDesc(0))
    for label, call in (("create", d.create), ("destroy", d.destroy),
                        ("undefine", d.undefine), ("autostart", lambda: d.setAutostart(1)),
                        ("define", lambda: c.defineXML(d.XMLDesc(0)))):
        try:
            call()
            out[label] = "ok"
        except libvirt.libvirtError as e:
            out[label] = [e.get_error_code(), str(e)]
    c.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""
C{make run}: a session daemon in the foreground with a demo guest defined.

Writes the demo guest's XML (a no-OS guest booting the qboot firmware, under
KVM when /dev/kvm is usable, else TCG), prints how to reach the daemon with
virsh and qemuctl, then replaces itself with C{twistd -n qemud --session}.
"""

from __future__ import annotations

import os
import sys

DEMO_XML = """\
<domain type='{type}'>
  <name>demo</name>
  <title>qemud demo guest (qboot firmware, no OS)</title>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader type='rom'>/usr/share/qemu/qboot.rom</loader>
  </os>
  <features><acpi/></features>
  <devices>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
  </devices>
</domain>
"""


def kvm_usable() -> bool:
    """
    @return: whether /dev/kvm can be opened read-write.
    """
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def main() -> None:
    """
    Write the demo XML, print the connection hints, exec the daemon.
    """
    from qemud.daemon.paths import DaemonPaths

    paths = DaemonPaths.session()
    demo_dir = os.path.join(os.path.dirname(paths.config_dir), "demo")
    os.makedirs(demo_dir, exist_ok=True)
    xml_path = os.path.join(demo_dir, "demo.xml")
    with open(xml_path, "w", encoding="utf-8") as f:
        f.write(DEMO_XML.format(type="kvm" if kvm_usable() else "qemu"))
    uri = f"qemu+unix:///session?socket={paths.socket}"
    bindir = os.path.dirname(sys.executable)
    print(f"""qemud session daemon starting (Ctrl-C stops it; guests keep running).
Socket: {paths.socket}
The guest 'demo' is defined. From another terminal:
  virsh -c '{uri}' list --all
  virsh -c '{uri}' start demo
  virsh -c '{uri}' dominfo demo
  {bindir}/qemuctl -c '{uri}' list --all
  {bindir}/qemuctl -c '{uri}' destroy demo
""", flush=True)
    twistd = os.path.join(bindir, "twistd")
    os.execv(twistd, [twistd, "-n", "--pidfile=", "qemud", "--session", "--define", xml_path])


if __name__ == "__main__":
    main()

"""
The C{twistd qemud} plugin: a lazy pointer at L{qemud.tap}.

Nothing is imported until C{twistd qemud} actually runs.
"""

from twisted.application.service import ServiceMaker

qemud = ServiceMaker(
    "qemud",
    "qemud.tap",
    "A QEMU/KVM virtualization daemon speaking libvirt's remote protocol",
    "qemud",
)

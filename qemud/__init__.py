"""qemud: a QEMU/KVM virtualization daemon speaking libvirt's remote protocol."""

"""Pure domain model: libvirt-style domain XML parsed into frozen dataclasses."""

"""Deferred-based client for qemud (and libvirtd) over libvirt's remote protocol."""

"""Pure implementation of libvirt's remote RPC protocol: XDR, framing, procedures."""

"""Everything that talks to QEMU: capabilities, command line, QMP, processes, guests."""

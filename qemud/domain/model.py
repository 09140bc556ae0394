# -*- test-case-name: tests.domain.test_xml -*-
"""
The domain model: a libvirt-style guest definition as frozen dataclasses.

Field names follow libvirt's XML element and attribute names.  Values are
already normalised: memory in KiB, UUIDs in lower-case dashed form, MACs in
lower-case colon form, booleans as C{bool}.  C{None} means "not given".

Devices carry an C{alias} that is only filled in for a running guest (libvirt
shows aliases in the live XML only); the inactive rendering omits them.

Devices that sit on PCI carry an C{address} (L{PCIAddress}): given by the
user, or assigned by L{qemud.domain.pci} so that QEMU's command line places
every device where the XML says.

Instances are immutable; use L{dataclasses.replace} to derive a changed copy.
This module is pure (standard library only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Domain <type>: the accelerator.
DOMAIN_TYPES = ("qemu", "kvm")

# on_poweroff / on_reboot / on_crash actions.
LIFECYCLE_ACTIONS = ("destroy", "restart", "preserve", "rename-restart", "coredump-destroy",
                     "coredump-restart")


@dataclass(frozen=True)
class PCIAddress:
    """
    C{<address type='pci' domain= bus= slot= function= multifunction=>}.

    @ivar domain: the PCI domain (always 0 for QEMU guests).
    @ivar bus: the bus number (0: the root bus, C{pci.0} or C{pcie.0}).
    @ivar slot: the slot, 0 to 31.
    @ivar function: the function, 0 to 7.
    @ivar multifunction: libvirt's C{multifunction='on|off'}, C{None} when absent.
    """

    domain: int = 0
    bus: int = 0
    slot: int = 0
    function: int = 0
    multifunction: bool | None = None

    def __str__(self) -> str:
        """
        @return: libvirt's spelling, C{0000:00:05.0}.
        """
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function}"


@dataclass(frozen=True)
class Loader:
    """
    C{<os><loader>}: firmware to load instead of the default BIOS.

    @ivar path: the firmware file.
    @ivar type: C{'rom'} or C{'pflash'}.
    @ivar readonly: libvirt's C{readonly='yes'}.
    """

    path: str
    type: str | None = None
    readonly: bool | None = None


@dataclass(frozen=True)
class OS:
    """
    C{<os>}: how the guest boots.

    @ivar type: the OS type, always C{'hvm'} for QEMU guests.
    @ivar arch: guest architecture (C{x86_64}, C{i686}, C{aarch64}, ...).
    @ivar machine: machine type as given (C{pc}, C{q35}, C{pc-i440fx-7.2}, ...).
    @ivar boot_devs: C{<boot dev=...>} in order (C{hd}, C{cdrom}, C{fd}, C{network}).
    @ivar bootmenu: C{<bootmenu enable='yes|no'>}, C{None} when absent.
    @ivar bios_useserial: C{<bios useserial='yes|no'>}, C{None} when absent.
    """

    type: str = "hvm"
    arch: str | None = None
    machine: str | None = None
    loader: Loader | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    boot_devs: tuple[str, ...] = ()
    bootmenu: bool | None = None
    bios_useserial: bool | None = None


@dataclass(frozen=True)
class Features:
    """C{<features>}: the hypervisor features switched on."""

    acpi: bool = False
    apic: bool = False
    pae: bool = False


@dataclass(frozen=True)
class CPUFeature:
    """C{<cpu><feature policy= name=>}."""

    name: str
    policy: str = "require"


@dataclass(frozen=True)
class CPU:
    """
    C{<cpu>}: the guest CPU model.

    @ivar mode: C{host-passthrough}, C{host-model} or C{custom}.
    @ivar model: the named model for C{custom} mode (e.g. C{qemu64}).
    @ivar match: libvirt's C{match} attribute (C{exact}, C{minimum}, C{strict}).
    @ivar check: libvirt's C{check} attribute.
    @ivar fallback: C{<model fallback=...>}.
    @ivar features: extra CPU feature requirements.
    """

    mode: str = "custom"
    model: str | None = None
    match: str | None = None
    check: str | None = None
    fallback: str | None = None
    features: tuple[CPUFeature, ...] = ()


@dataclass(frozen=True)
class Timer:
    """C{<clock><timer name= present= tickpolicy=>}."""

    name: str
    present: bool | None = None
    tickpolicy: str | None = None


@dataclass(frozen=True)
class Clock:
    """C{<clock offset='utc|localtime'>} and its timers."""

    offset: str = "utc"
    timers: tuple[Timer, ...] = ()


@dataclass(frozen=True)
class Disk:
    """
    C{<disk>}: a block device.

    @ivar type: C{file} or C{block}.
    @ivar device: C{disk}, C{cdrom} or C{floppy}.
    @ivar driver_name: C{<driver name=>}, normally C{qemu}.
    @ivar driver_type: C{<driver type=>}: C{raw} or C{qcow2}.
    @ivar source: the file or block device path; C{None} for an empty cdrom/floppy.
    @ivar target_dev: C{<target dev=>}: C{hda}..C{hdd}, C{fda}, C{vda}, C{sda}, ...
    @ivar target_bus: C{<target bus=>}: C{ide}, C{fdc}, C{virtio}, C{scsi}, C{sata}, C{usb}.
    @ivar boot_order: C{<boot order=N>}.
    @ivar serial: C{<serial>}, passed to the guest.
    @ivar tray: C{<target tray=>} for removable media (live state: C{open}/C{closed}).
    """

    target_dev: str
    target_bus: str
    type: str = "file"
    device: str = "disk"
    driver_name: str | None = None
    driver_type: str | None = None
    driver_cache: str | None = None
    source: str | None = None
    readonly: bool = False
    shareable: bool = False
    boot_order: int | None = None
    serial: str | None = None
    tray: str | None = None
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class Interface:
    """
    C{<interface>}: a network card and its back-end.

    @ivar type: C{user}, C{network}, C{bridge}, C{ethernet}, C{server},
        C{client}, C{mcast} or C{udp}.
    @ivar mac: the MAC address, C{52:54:00:...} when generated.
    @ivar model: C{<model type=>}: C{virtio}, C{e1000}, C{rtl8139}, C{ne2k_pci}.
    @ivar source_network: C{<source network=>} (type C{network}).
    @ivar source_bridge: C{<source bridge=>} (type C{bridge}).
    @ivar source_address: C{<source address=>} (socket types).
    @ivar source_port: C{<source port=>} (socket types).
    @ivar local_address: C{<source><local address=>} (type C{udp}).
    @ivar local_port: C{<source><local port=>} (type C{udp}).
    @ivar target_dev: C{<target dev=>}: the host tap name (C{ethernet}, C{bridge}).
    @ivar script: C{<script path=>} run to set up the tap.
    @ivar boot_order: C{<boot order=N>}.
    """

    type: str
    mac: str
    model: str | None = None
    source_network: str | None = None
    source_bridge: str | None = None
    source_address: str | None = None
    source_port: int | None = None
    local_address: str | None = None
    local_port: int | None = None
    target_dev: str | None = None
    script: str | None = None
    boot_order: int | None = None
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class Graphics:
    """
    C{<graphics type='vnc'>}.

    @ivar port: the TCP port; C{-1} (with C{autoport}) means "pick one at start".
        A running guest's definition holds the port actually chosen.
    @ivar autoport: libvirt's C{autoport='yes'}.
    @ivar listen: the listen address.
    @ivar passwd: the VNC password: a secret, formatted only when not secure.
    @ivar keymap: the keyboard map.
    """

    type: str = "vnc"
    port: int = -1
    autoport: bool = True
    listen: str | None = None
    passwd: str | None = None
    keymap: str | None = None


@dataclass(frozen=True)
class CharDev:
    """
    C{<serial>} or C{<console>}: a character device and its host side.

    @ivar type: C{pty}, C{file}, C{unix}, C{tcp}, C{udp}, C{null}, C{stdio}, C{vc}.
    @ivar source_path: C{<source path=>} (C{file}, C{unix}; a C{pty}'s path when live).
    @ivar source_mode: C{<source mode=>}: C{bind} (server) or C{connect}.
    @ivar source_host: C{<source host=>} (C{tcp}, C{udp}).
    @ivar source_service: C{<source service=>} (C{tcp}, C{udp}): the port.
    @ivar protocol: C{<protocol type=>}: C{raw} or C{telnet} (C{tcp}).
    @ivar target_type: C{<target type=>} (C{isa-serial}, C{serial}, C{virtio}).
    @ivar target_port: C{<target port=>}.
    @ivar bind_host: C{<source mode='bind' host=>} (C{udp}): the local end.
    @ivar bind_service: C{<source mode='bind' service=>} (C{udp}): the local port.
    """

    type: str
    source_path: str | None = None
    source_mode: str | None = None
    source_host: str | None = None
    source_service: str | None = None
    protocol: str | None = None
    target_type: str | None = None
    target_port: int | None = None
    alias: str | None = None
    bind_host: str | None = None
    bind_service: str | None = None


@dataclass(frozen=True)
class Input:
    """C{<input type='tablet|mouse|keyboard' bus='usb|ps2|virtio'>}."""

    type: str
    bus: str | None = None
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class Video:
    """C{<video><model type= vram= heads=>}."""

    model: str
    vram: int | None = None
    heads: int | None = None
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class MemBalloon:
    """C{<memballoon model='virtio|none'>}."""

    model: str
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class Watchdog:
    """C{<watchdog model='i6300esb|ib700' action='reset|shutdown|poweroff|pause|none|dump|inject-nmi'>}."""

    model: str
    action: str | None = None
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class RNG:
    """C{<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>}."""

    model: str
    backend_model: str = "random"
    backend_path: str | None = None
    alias: str | None = None
    address: PCIAddress | None = None


@dataclass(frozen=True)
class Controller:
    """
    C{<controller type= index= model=>}: a bus controller QEMU gets as a device.

    Only the kinds qemud creates are modelled: C{usb} (models C{piix3-uhci},
    C{qemu-xhci}, C{none}), C{sata} (ich9-ahci), C{scsi} (C{lsilogic},
    C{virtio-scsi}), C{virtio-serial} and, on q35, C{pci} of model
    C{pcie-root-port} (making PCI bus C{index}).  The board's own IDE,
    floppy and PCI root controllers are implicit.

    @ivar type: C{usb}, C{sata}, C{scsi}, C{virtio-serial} or C{pci}.
    @ivar index: the controller's number among those of its type.
    @ivar model: the model; C{None} for the types that have only one
        (C{sata}, C{virtio-serial}) and until the machine's default, if
        it has one, is filled in.
    @ivar target_chassis: a root port's C{<target chassis=>}.
    @ivar target_port: a root port's C{<target port=>}.
    """

    type: str
    index: int = 0
    model: str | None = None
    alias: str | None = None
    address: PCIAddress | None = None
    target_chassis: int | None = None
    target_port: int | None = None


@dataclass(frozen=True)
class Devices:
    """C{<devices>}: everything attached to the guest, in document order."""

    emulator: str | None = None
    disks: tuple[Disk, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    graphics: tuple[Graphics, ...] = ()
    serials: tuple[CharDev, ...] = ()
    consoles: tuple[CharDev, ...] = ()
    inputs: tuple[Input, ...] = ()
    videos: tuple[Video, ...] = ()
    memballoon: MemBalloon | None = None
    watchdogs: tuple[Watchdog, ...] = ()
    rngs: tuple[RNG, ...] = ()
    controllers: tuple[Controller, ...] = ()


@dataclass(frozen=True)
class Domain:
    """
    A complete guest definition (libvirt's C{<domain>}).

    @ivar type: C{qemu} (TCG) or C{kvm}.
    @ivar name: the unique name; also a file name on disk.
    @ivar uuid: lower-case dashed UUID.
    @ivar memory_kib: C{<memory>}: maximum memory in KiB.
    @ivar current_memory_kib: C{<currentMemory>} in KiB (equals memory when absent).
    @ivar vcpus: C{<vcpu>}: maximum vCPUs.
    @ivar current_vcpus: C{<vcpu current=>}, C{None} when absent.
    @ivar cpuset: C{<vcpu cpuset=>}, kept as given.
    @ivar vcpu_placement: C{<vcpu placement=>}: C{static} or C{auto}.
    """

    type: str
    name: str
    uuid: str
    memory_kib: int
    vcpus: int = 1
    current_memory_kib: int | None = None
    current_vcpus: int | None = None
    cpuset: str | None = None
    title: str | None = None
    description: str | None = None
    os: OS = field(default_factory=OS)
    features: Features = field(default_factory=Features)
    cpu: CPU | None = None
    clock: Clock = field(default_factory=Clock)
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    devices: Devices = field(default_factory=Devices)
    vcpu_placement: str | None = None

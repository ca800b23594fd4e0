"""Creating a run's machines: their volumes, seed, domain spec and SSH key.

A `Provisioner` belongs to one run id; it remembers every volume and machine
it made so the run can remove them all, whatever happened.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import libvirt

from lab.base.config import Config
from lab.base.disks import Disk
from lab.base.errors import HarnessError, Interrupted
from lab.base.log import Log
from lab.image.store import BOOT_TIMEOUT, Image
from lab.machine import Machine
from lab.machine.shell import Timeouts
from lab.machine.ssh import HostKey, JumpHost, KeyPair, SshSession
from lab.provision.warm import Checkpoint, Shape, WarmStore, WarmUnusable, written
from lab.virt import cloudinit
from lab.virt.cleanup import RunObjects, remove_run
from lab.virt.domain import DiskSpec, DomainSpec, KernelBoot, PeerLink, retarget_saved_xml
from lab.virt.hypervisor import AccelProbe, release_vcpus, reserve_vcpus
from lab.virt.storage import Pool, run_prefix


@dataclass(frozen=True)
class MachineRequest:
    name: str  # short: "vm1", "builder"
    image: Image
    directory: Path  # holds console.log and the machine's SSH key
    memory: int = 1024
    cpus: int = 2
    disks: tuple[Disk, ...] = ()  # blank disks
    attach: tuple[tuple[str, str], ...] = ()  # (pool volume, serial): existing volumes, read-only raw
    labels: tuple[tuple[str, str], ...] = ()  # extra domain metadata
    shared: tuple[DiskSpec, ...] = ()  # disks every machine of the run has (Provisioner.shared_disks)
    peer: PeerLink | None = None  # the NIC between the run's guests, if it has several
    outbound: bool = False  # the guest may open connections to the host and beyond (a scenario's declaration)
    clone: int = 0  # its place among its run's guests (a warm start restores each from a save of its own)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Provisioner:
    def __init__(self, conn: libvirt.virConnect, pool: Pool, config: Config, log: Log, run_id: str,
                 accel: str, accel_reason: str) -> None:
        self.conn, self.pool, self.config, self.log, self.run_id = conn, pool, config, log, run_id
        self.accel, self.accel_reason = accel, accel_reason
        scale = config.timeout_factor * (config.tcg_timeout_factor if accel == "tcg" else 1.0)
        self.timeouts = Timeouts(scale=scale, boot=config.boot_timeout or BOOT_TIMEOUT)
        self.volumes: list[str] = []
        self.machines: list[Machine] = []
        self.key_files: list[Path] = []  # the run's private keys, removed with it
        self._cpus: dict[str, int] = {}  # vCPUs reserved for each machine, by name
        host = config.libvirt_host
        # a remote libvirt host: the guests' ports are on its loopback
        self.jump = JumpHost(host, log.child("paramiko")) if host else None

    @classmethod
    def open(cls, conn: libvirt.virConnect, pool: Pool, config: Config, log: Log, run_id: str,
             probe_kernel: Callable[[], str | None]) -> Provisioner:
        """Choose the accelerator; `probe_kernel` names a kernel volume, asked for only if KVM needs a probe."""

        def kernel_path() -> str | None:
            name = probe_kernel()
            volume = pool.lookup(name) if name else None
            return str(volume.path()) if volume else None

        probe = AccelProbe(conn, config)
        accel = probe.choose(kernel_path, run_id)
        return cls(conn, pool, config, log, run_id, accel, probe.reason)

    def machine(self, request: MachineRequest, *, autodestroy: bool = True) -> Machine:
        """Create a machine's volumes and return it, not yet started (a cold boot)."""
        request.directory.mkdir(parents=True, exist_ok=True)
        prefix = self._prefix(request)
        key = self._run_key(request)
        disks = [DiskSpec(self._root_overlay(request), "lab-root"),
                 *(self._blank_disk(request, disk, "") for disk in request.disks)]
        for volume_name, serial in request.attach:
            disks.append(DiskSpec(self._path(volume_name), serial, format="raw", readonly=True))
        disks.extend(request.shared)
        host_key = HostKey.generate()
        seed = self._track(self.pool.upload_bytes(f"{prefix}-seed.iso", self._seed(prefix, request, key, host_key)))
        disks.append(DiskSpec(seed, "cidata", format="raw", readonly=True))
        machine = self._machine(request, disks, key, autodestroy=autodestroy)
        machine.ssh.pin(frozenset({host_key.fingerprint}))
        return machine

    def shape(self, request: MachineRequest) -> Shape:
        hypervisor = f"{self.conn.getType()} {self.conn.getVersion()} libvirt {self.conn.getLibVersion()}"
        return Shape(request.image, request.memory, self._vcpus(request), self._domain_type, hypervisor,
                     written(self.pool, request.image.volumes), peer_nic=request.peer is not None,
                     clone=request.clone)

    def saving_machine(self, request: MachineRequest, store: WarmStore, key: str) -> Machine:
        """A machine to boot cold and save as the warm guest `key`: its root and seed are the
        store's volumes (kept after the run), its key the store's; no extra disks."""
        request.directory.mkdir(parents=True, exist_ok=True)
        keys = store.new_key_pair(key)
        root = self.pool.create_overlay(store.root_volume(key), self._volume(request.image.disk_volume),
                                        request.image.disk_format)
        host_key = HostKey.generate()
        seed = self.pool.upload_bytes(store.seed_volume(key), self._seed(f"warm-{key}", request, keys, host_key))
        disks = [DiskSpec(root.path(), "lab-root"), DiskSpec(seed.path(), "cidata", format="raw", readonly=True)]
        machine = self._machine(request, disks, keys, autodestroy=True)
        machine.ssh.pin(frozenset({host_key.fingerprint}))
        return machine

    def save(self, machine: Machine, store: WarmStore, key: str, shape: Shape,
             checkpoint: Checkpoint | None = None) -> None:
        machine.save(store.saves.target(key))
        store.saves.written(key)
        store.mark_saved(key, machine.ssh.key, machine.ssh.pinned, shape, machine.failed_units(), checkpoint)
        self.machines.remove(machine)

    def restored_machine(self, request: MachineRequest, store: WarmStore, key: str, *,
                         checkpoint: str = "") -> Machine:
        """A machine started from the saved guest `key` and ready, with a key of its own. Its disks are overlays
        on the saved guest's frozen ones, and the scenario's other disks are hot-plugged: all the run's (removed
        with it), or, for a `checkpoint` about to be made from this machine, that checkpoint's (kept)."""
        request.directory.mkdir(parents=True, exist_ok=True)
        own_key = store.new_key_pair(checkpoint) if checkpoint else self._run_key(request)
        frozen = store.disks(key)
        disks = [self._restored_disk(request, serial, volume, checkpoint) for serial, volume in frozen.items()]
        extras = [*(self._blank_disk(request, disk, checkpoint) for disk in request.disks if disk.serial not in frozen),
                  *request.shared]
        machine = self._machine(request, [*disks, *extras], store.key_pair(key), autodestroy=False)
        host_keys = store.host_keys(key)
        if host_keys:
            machine.ssh.pin(host_keys)
        try:
            saved = store.saves.read(key)
            xml = retarget_saved_xml(saved.xml, machine.spec)
            with store.saves.private_copy(key, saved, xml, request.directory, self._prefix(request)) as copy:
                machine.restore(copy, tuple(d.serial for d in extras))
        except Interrupted:
            raise
        except (ValueError, HarnessError, libvirt.libvirtError) as exc:
            raise WarmUnusable(f"saved guest {key}: {exc}") from exc
        machine.wait_for_restore(own_key, store.failed_units(key))
        store.touch(key)
        return machine

    def _restored_disk(self, request: MachineRequest, serial: str, volume: str, checkpoint: str) -> DiskSpec:
        """The seed as it is (read-only); any other frozen disk under an overlay of the run or the checkpoint."""
        if serial == "cidata":
            return DiskSpec(self._path(volume), serial, format="raw", readonly=True)
        overlay = self.pool.create_overlay(self._disk_name(request, serial, checkpoint), self._volume(volume),
                                           "qcow2")
        return DiskSpec(str(overlay.path()) if checkpoint else self._track(overlay), serial)

    def _blank_disk(self, request: MachineRequest, disk: Disk, checkpoint: str) -> DiskSpec:
        volume = self.pool.create_blank(self._disk_name(request, disk.serial, checkpoint), disk.bytes)
        return DiskSpec(str(volume.path()) if checkpoint else self._track(volume), disk.serial)

    def _disk_name(self, request: MachineRequest, serial: str, checkpoint: str) -> str:
        """A machine's qcow2 volume for the disk `serial`: the run's, or the checkpoint's it is becoming."""
        if checkpoint:
            return WarmStore.root_volume(checkpoint) if serial == "lab-root" else WarmStore.disk_volume(checkpoint,
                                                                                                        serial)
        return f"{self._prefix(request)}-{'root' if serial == 'lab-root' else serial}.qcow2"

    def _machine(self, request: MachineRequest, disks: list[DiskSpec], key: KeyPair, *,
                 autodestroy: bool) -> Machine:
        spec = DomainSpec(
            name=self._prefix(request), run_id=self.run_id, domain_type=self._domain_type,
            memory_mib=request.memory, vcpus=self._vcpus(request), disks=tuple(disks),
            console_path=str(request.directory / "console.log"), ssh_port=0,
            kernel_boot=self._kernel_boot(request.image), console_stream=self.jump is not None, peer=request.peer,
            outbound=request.outbound,
            metadata={"pid": str(os.getpid()), "host": socket.gethostname(), **dict(request.labels)},
        )
        ssh = SshSession("127.0.0.1", spec.ssh_port, request.image.login_user, key, self.jump,
                         scale=self.timeouts.scale, log_channel=self.log.child(f"paramiko.{request.name}"))
        timeouts = replace(self.timeouts, boot=self.config.boot_timeout or request.image.boot_timeout)
        machine = Machine(spec, self.conn, ssh, self.log, timeouts, autodestroy=autodestroy)
        self.machines.append(machine)
        return machine

    @property
    def _domain_type(self) -> str:
        return "kvm" if self.accel == "kvm" else "qemu"

    def _vcpus(self, request: MachineRequest) -> int:
        """What the scenario asks, within LAB_MAX_VCPUS and the host's CPUs other guests (and runs about to
        start theirs) leave free: reserved once per machine, so its warm key and its domain agree."""
        if request.name not in self._cpus:
            wanted = max(1, min(request.cpus, self.config.max_vcpus))
            self._cpus[request.name] = reserve_vcpus(self.conn, self.config.state_dir, self.run_id, wanted)
        return self._cpus[request.name]

    def _prefix(self, request: MachineRequest) -> str:
        return f"{run_prefix(self.run_id)}{request.name}"

    def _run_key(self, request: MachineRequest) -> KeyPair:
        key = KeyPair.generate(request.directory / "id_ed25519", self._prefix(request))
        self.key_files.append(key.private_path)
        return key

    def shared_disks(self, disks: Sequence[Disk]) -> tuple[DiskSpec, ...]:
        """Blank raw volumes for disks several machines of the run attach at once."""
        prefix = run_prefix(self.run_id)
        return tuple(DiskSpec(self._track(self.pool.create_blank(f"{prefix}shared-{disk.serial}.raw", disk.bytes,
                                                                 "raw")), disk.serial, "raw", shareable=True)
                     for disk in disks)

    def _volume(self, name: str) -> libvirt.virStorageVol:
        volume = self.pool.lookup(name)
        if volume is None:
            raise HarnessError(f"volume {name} is not in pool {self.pool.name}")
        return volume

    def _path(self, name: str) -> str:
        return str(self._volume(name).path())

    def upload(self, suffix: str, path: Path) -> str:
        """Copy a local file into a run volume `lab-run-<id>-<suffix>`; returns the volume's name."""
        name = f"{run_prefix(self.run_id)}{suffix}"
        self._track(self.pool.upload_file(name, path, "raw"))
        return name

    def teardown(self) -> None:
        """Destroy every machine and volume this provisioner made; never raises."""
        for machine in self.machines:
            self._destroy(machine)
        for path in self.key_files:
            path.unlink(missing_ok=True)
        remove_run(RunObjects(self.run_id, volumes=list(self.volumes)), self.pool, self.log)
        if self.jump:
            self.jump.close()
        self.key_files.clear()
        self.machines.clear()
        self.volumes.clear()
        release_vcpus(self.config.state_dir, self.run_id)
        self._cpus.clear()

    def discard(self, request: MachineRequest) -> None:
        """Destroy one machine and remove its own volumes (a restore that failed, before it boots cold): the
        run's other machines and the disks they share stay. Never raises."""
        name = self._prefix(request)
        for machine in [m for m in self.machines if m.spec.name == name]:
            self._destroy(machine)
            self.machines.remove(machine)
        own = [volume for volume in self.volumes if volume.startswith(f"{name}-")]
        remove_run(RunObjects(self.run_id, volumes=own), self.pool, self.log)
        self.volumes = [volume for volume in self.volumes if volume not in own]

    def _destroy(self, machine: Machine) -> None:
        try:
            machine.destroy()
        except libvirt.libvirtError as exc:
            self.log.warning(f"could not destroy {machine.spec.name}: {exc.get_error_message()}")

    def _root_overlay(self, request: MachineRequest) -> str:
        base = self._volume(request.image.disk_volume)
        return self._track(self.pool.create_overlay(self._disk_name(request, "lab-root", ""), base,
                                                    request.image.disk_format))

    def _seed(self, instance_id: str, request: MachineRequest, key: KeyPair, host_key: HostKey) -> bytes:
        files = cloudinit.render_seed_files(self.config.cloudinit_dir, cloudinit.SeedInputs(
            hostname=request.name, instance_id=instance_id, user=request.image.login_user,
            ssh_public_key=key.public_line, host_private_key=host_key.private_text,
            host_public_key=host_key.public_line))
        return cloudinit.build_seed_iso(files)

    def _kernel_boot(self, image: Image) -> KernelBoot | None:
        if not (image.kernel_volume and image.initrd_volume):
            return None
        kernel, initrd = self.pool.lookup(image.kernel_volume), self.pool.lookup(image.initrd_volume)
        if kernel is None or initrd is None:
            raise HarnessError(f"kernel or initrd of image {image.name} is missing from pool {self.pool.name}")
        return KernelBoot(kernel.path(), initrd.path(), image.cmdline)

    def _track(self, volume: libvirt.virStorageVol) -> str:
        self.volumes.append(volume.name())
        return str(volume.path())

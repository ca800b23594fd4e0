"""libvirt and QEMU: the hypervisor connection and accelerator, the storage pool, domain XML, the cloud-init
seed, the serial console and the removal of what a run created."""

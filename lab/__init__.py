"""atomic-lab: reproduce container-host field bugs in disposable libvirt VMs."""

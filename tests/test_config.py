"""Where libvirt runs: here, or a remote host reached over SSH."""

import pytest

from lab.config import LibvirtHost
from lab.errors import UsageError


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu:///session", "test:///default", "qemu+unix:///system"])
def test_libvirt_here(uri: str) -> None:
    assert LibvirtHost.from_uri(uri) is None


def test_a_remote_host_over_ssh_with_its_key_and_port() -> None:
    host = LibvirtHost.from_uri("qemu+ssh://lab@kvm7.example:2200/system?keyfile=/k/id&no_verify=1")
    assert host == LibvirtHost("lab", "kvm7.example", 2200, "/k/id", verify=False)
    assert LibvirtHost.from_uri("qemu+ssh://root@kvm7.example/system") == LibvirtHost(
        "root", "kvm7.example", 22, None, verify=True)


def test_a_remote_host_without_ssh_is_refused() -> None:
    with pytest.raises(UsageError, match="qemu\\+ssh://"):
        LibvirtHost.from_uri("qemu+tls://kvm7.example/system")

"""cloud-init at later boots: off by default, as Atomic operators set it up; on again when a scenario asks."""

from __future__ import annotations

import pytest

from lab.context import ScenarioContext

pytestmark = pytest.mark.vm
INIT = "journalctl -b -u cloud-init.service -o cat --no-pager"  # this boot's init stage (the images' first)


@pytest.mark.lab
def test_cloud_init_runs_at_later_boots_only_when_a_scenario_asks(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.reboot()
    assert "running 'init'" not in vm.succeed(INIT)
    vm.run_cloud_init_at_every_boot()
    vm.reboot()
    assert "running 'init'" in vm.succeed(INIT)

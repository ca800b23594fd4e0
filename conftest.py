"""Project-wide test policy (tests/ and scenarios/): nightly-only tests, longest VM tests first, and VM
tests that skip without a hypervisor, except under CI where that is a failure."""

from __future__ import annotations

import functools
import os
import shutil

import pytest

from lab.pytest_plugin import EXTERNAL_ABSENT

pytest_plugins = ["pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nightly", action="store_true", help="also run the tests marked nightly")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nightly: variants and soak, only with --nightly (make nightly)")


def _hypervisor_missing() -> str:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (make setup)"
    try:
        import libvirt

        from lab.config import Config

        libvirt.open(Config.from_env().libvirt_uri).close()
    except Exception as exc:
        return f"libvirt unreachable: {exc}"
    return ""


@functools.cache
def _scenario_timeouts() -> dict[str, float]:
    from lab.config import REPO_ROOT
    from lab.scenario import Registry

    return {item.name: item.timeout for item in Registry.load(REPO_ROOT / "scenarios").all()}


def _cost(item: pytest.Item) -> float:
    """Rough seconds (a scenario's time limit), to start the longest tests first under pytest -n."""
    if "vm" not in item.keywords:
        return 0.0
    scenario = getattr(item, "scenario", None)  # a scenario item of the lab plugin
    if scenario is not None:
        return float(scenario.timeout)
    callspec = getattr(item, "callspec", None)
    return _scenario_timeouts().get(str(callspec.params.get("name")) if callspec else "", 300.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_cost, reverse=True)
    nightly = config.getoption("--nightly")
    missing = None
    for item in items:
        if "nightly" in item.keywords and not nightly:
            item.add_marker(pytest.mark.skip(reason="nightly only (make nightly)"))
        if "vm" in item.keywords:
            missing = _hypervisor_missing() if missing is None else missing
            if missing:
                item.add_marker(pytest.mark.skip(reason=missing))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI a VM test must run: turn its skip into a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and "vm" in item.keywords and report.skipped \
            and not any(ok in str(report.longrepr) for ok in ("nightly only", EXTERNAL_ABSENT)):
        report.outcome = "failed"
        report.longrepr = f"VM test skipped under CI: {report.longrepr}"

"""pytest integration (registered as the `lab` pytest plugin when atomic-lab is installed).

- `pytest scenarios/` collects every scenario x image: the scenario's own image, plus each
  `--lab-image`. Items are marked `vm` and with the scenario's tags (`-m storage`), named
  `<scenario>[<image>]` (`-k lab-atomic`), and `--junitxml` gets one testcase per scenario x image.
- A test that asks for the `machine` fixture (or `lab`, the whole ScenarioContext) gets a booted
  guest shaped by `@pytest.mark.lab(image=..., memory=..., disks=[Disk(...)], ...)` and runs
  exactly like a scenario: warm start, artifacts, health check, evidence on failure, teardown.
- `--lab-report DIR` writes summary.md/.json and junit.xml of all lab runs (xdist-safe).
- The options of `lab run`: `--lab-set KEY=VALUE`, `--lab-keep`, `--lab-keep-on-failure`, `--lab-sit`,
  `--lab-shard K/N`, `--lab-rerun-failed N` (its policy: flaky, known issues as xfail); `--lab-variants`
  adds an item per other value of a scenario's choices.
- Its rules, in any repository: tests marked `nightly` run only with `--nightly`; a VM test skips when
  there is no hypervisor, except under `CI`, where a VM test that skips fails (nightly-only items and
  absent external images excepted); the longest VM tests start first (pytest -n).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.base.config import Config, vcpu_share
from lab.base.errors import LabError, RunFailed
from lab.base.log import ROOT, Log, configure_terminal
from lab.context import ScenarioContext
from lab.doors.parallel import shard
from lab.doors.pytest_report import RESULT, STATUS, Reporter, RerunSummary
from lab.image.external import load_manifests, not_imported
from lab.machine import Machine
from lab.provision.prepare import prepare_images
from lab.replay import replay
from lab.run.reruns import settled_run
from lab.run.runner import Run, RunRequest
from lab.run.sit import wait_for_enter
from lab.scenario import DEFAULT_TIMEOUT, TAGS, Registry, Scenario, declare, load_file

NIGHTLY_ONLY = "nightly only (make nightly)"  # the skip reason of nightly items without --nightly
EXTERNAL_ABSENT = "external image absent"  # the skip reason's start (CI lets these skips pass)
_CALL_FAILED = pytest.StashKey[BaseException]()  # a test's own failure, for the run it used
_IMAGES = pytest.StashKey[list[str]]()  # the images the selected VM tests boot
_TIMEOUTS = pytest.StashKey[dict[str, float]]()
_SETTINGS = pytest.StashKey[Config]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lab", "atomic-lab scenarios and machines")
    group.addoption("--lab-image", action="append", default=[], metavar="NAME|PATH",
                    help="also run each collected scenario on this image (repeatable)")
    group.addoption("--lab-external", action="store_true",
                    help="also run each scenario on every external image (images/external); those not imported "
                         "are skipped, saying how to get them")
    group.addoption("--lab-cold", action="store_true", help="boot every guest instead of restoring a saved one")
    group.addoption("--lab-report", metavar="DIR", help="write summary.md, summary.json and junit.xml of the runs")
    group.addoption("--nightly", action="store_true", help="also run the tests marked nightly")
    group.addoption("--lab-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a scenario parameter, for the scenarios that have it (lab run --set)")
    group.addoption("--lab-variants", action="store_true",
                    help="also an item per other value of a scenario's choices: thinpool-full[lab-atomic,mode=error]")
    group.addoption("--lab-keep", action="store_true", help="leave each guest running (lab ssh RUN_ID)")
    group.addoption("--lab-keep-on-failure", action="store_true", help="leave a failed test's guest running")
    group.addoption("--lab-sit", action="store_true",
                    help="a failed test waits before teardown, its guest up (Enter, or LAB_SIT_TIMEOUT)")
    group.addoption("--lab-shard", metavar="K/N", help="run only the K-th of N deterministic slices (CI matrix)")
    group.addoption("--lab-rerun-failed", type=int, default=0, metavar="N",
                    help="re-run a scenario the lab failed (exit 2) in a fresh VM, up to N times (lab run's policy)")
    group.addoption("--lab-rerun-guest-failures", action="store_true",
                    help="with --lab-rerun-failed: also re-run when the guest misbehaved (exit 1)")


@pytest.hookimpl(trylast=True)  # after pytest's logging plugin is registered
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots a real guest under libvirt (TCG or KVM)")
    config.addinivalue_line("markers", "nightly: variants and soak, only with --nightly (make nightly)")
    config.addinivalue_line("markers", "lab(image=None, memory=1024, cpus=2, disks=(), timeout=900, expected=(), "
                                       "host=None): the guest the `machine` and `lab` fixtures boot; host: an "
                                       "sosreport whose storage it gets first")
    for tag in sorted(TAGS):
        _add_tag(config, tag)
    configure_terminal()
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    if logging_plugin is not None:  # pytest 9 also reports non-propagating loggers: not the runs' own records
        logging_plugin.report_handler.addFilter(lambda record: record.name.partition(".")[0] != ROOT)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")  # set in pytest -n workers
    if workers:
        os.environ["LAB_MAX_VCPUS"] = vcpu_share(int(workers))  # each VM gets its share of the cores
    if not hasattr(config, "workerinput"):  # the xdist controller, or a session without workers
        config.pluginmanager.register(RerunSummary(), "lab-reruns")
        if config.getoption("--lab-report"):
            config.pluginmanager.register(Reporter(Path(config.getoption("--lab-report"))), "lab-reporter")


def _add_tag(config: pytest.Config, tag: str) -> None:
    """A scenario tag as a marker (-m TAG), a user's own tags included (registered as they are collected)."""
    config.addinivalue_line("markers", f"{tag}: scenarios tagged {tag!r}")


def _settings(config: pytest.Config) -> Config:
    """The lab's settings (pyproject.toml, environment), read once a session, not per collected file."""
    if _SETTINGS not in config.stash:
        config.stash[_SETTINGS] = Config.from_env()
    return config.stash[_SETTINGS]


def _timeouts(config: pytest.Config) -> dict[str, float]:
    """Scenario time limits by name, loaded once a session."""
    if _TIMEOUTS not in config.stash:
        config.stash[_TIMEOUTS] = {s.name: s.timeout for s in Registry.load(_settings(config).scenarios_dirs).all()}
    return config.stash[_TIMEOUTS]


# --- the rules: nightly, no hypervisor, CI, longest first ------------------------------------------


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that boots a guest is a VM test (-m vm, and the rules below), marked or not."""
    if item.get_closest_marker("lab") or {"lab", "machine"} & set(getattr(item, "fixturenames", ())):
        item.add_marker("vm")


@pytest.hookimpl(trylast=True)  # after a project's own conftest marked its skips
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _check_sets(config, items)
    nightly, missing = config.getoption("--nightly"), None
    for item in items:
        if "nightly" in item.keywords and not nightly:
            item.add_marker(pytest.mark.skip(reason=NIGHTLY_ONLY))
        if "vm" in item.keywords:
            missing = _hypervisor_missing(_settings(config)) if missing is None else missing
            if missing:
                item.add_marker(pytest.mark.skip(reason=missing))
    if config.getoption("--lab-shard"):
        chosen = set(map(id, shard(items, config.getoption("--lab-shard"), key=lambda item: item.nodeid)))
        config.hook.pytest_deselected(items=[item for item in items if id(item) not in chosen])
        items[:] = [item for item in items if id(item) in chosen]
    items[:] = _longest_first(items, int(getattr(config, "workerinput", {}).get("workercount", 1)))
    config.stash[_IMAGES] = [image for item in items if (image := _image_of(item))]


def _longest_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """Longest first, dealt out like cards: xdist's worksteal hands each worker a contiguous share of the list,
    so a plain sort gave the first worker every long scenario and left the longest of them to run last."""
    ordered = sorted(items, key=_cost, reverse=True)
    return [item for worker in range(workers) for item in ordered[worker::workers]]


def _hypervisor_missing(settings: Config) -> str:
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (make setup)"
    try:
        import libvirt

        libvirt.open(settings.libvirt_uri).close()
    except Exception as exc:
        return f"libvirt unreachable: {exc}"
    return ""


def _cost(item: pytest.Item) -> float:
    """Rough seconds (a scenario's time limit, a lab marker's), to start the longest tests first under -n."""
    if "vm" not in item.keywords:
        return 0.0
    if isinstance(item, ScenarioItem):
        return float(item.scenario.timeout)
    marker = item.get_closest_marker("lab")
    if marker and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    callspec = getattr(item, "callspec", None)  # a test parametrized by scenario name
    return _timeouts(item.config).get(str(callspec.params.get("name")) if callspec else "", 300.0)


# --- images, built before the first test ---------------------------------------------------------


def _image_of(item: pytest.Item) -> str | None:
    """The image a VM test boots (the scenario's, a lab marker's or the default), unless it is skipped."""
    if "vm" not in item.keywords or item.get_closest_marker("skip"):
        return None
    if isinstance(item, ScenarioItem):
        return item.image
    marker = item.get_closest_marker("lab")
    if marker and marker.kwargs.get("image"):
        return str(marker.kwargs["image"])
    return replay.REPLAY_IMAGE if marker and marker.kwargs.get("host") else _settings(item.config).default_image


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Build the images the selected tests need before any of them boots (each xdist worker starts on
    another image, then waits for the others'), shown on the terminal as they are made."""
    images = session.config.stash.get(_IMAGES, [])
    if not images or session.config.option.collectonly:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        try:
            prepare_images(_settings(session.config), Log(label=f"[{worker}] "), images, int(worker[2:] or 0))
        except LabError as exc:  # each test that needs the image tries again, and fails with its own report
            print(f"[{worker}] building images before the tests failed: {exc}", file=sys.stderr)


# --- scenarios as items --------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    scenarios = _settings(parent.config).scenarios_dirs
    if file_path.suffix == ".py" and not file_path.name.startswith("_") and file_path.parent.resolve() in scenarios:
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        config = _settings(self.config)
        extra = list(self.config.getoption("--lab-image"))
        if self.config.getoption("--lab-external"):
            extra += sorted(load_manifests(config.images_dirs))
        for item in load_file(self.path):
            for image in dict.fromkeys([item.image or config.default_image, *extra]):
                for variant, params in _variants(item, self.config):
                    node = ScenarioItem.from_parent(self, name=f"{item.name}[{','.join([image, *variant])}]",
                                                    scenario=item, image=image, params=params)
                    absent = not_imported(config, image)
                    if absent:
                        node.add_marker(pytest.mark.skip(reason=f"{EXTERNAL_ABSENT}: {absent}"))
                    yield node


def _check_sets(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A --lab-set key no collected scenario has is a typo: refused, as `lab run --set` refuses it."""
    known = {key for item in items if isinstance(item, ScenarioItem) for key in item.scenario.params}
    unknown = sorted({s.partition("=")[0] for s in config.getoption("--lab-set")} - known)
    if unknown:
        raise pytest.UsageError(f"--lab-set {unknown[0]}: no collected scenario has a parameter {unknown[0]!r} "
                                f"(theirs: {', '.join(sorted(known)) or 'none'})")


def _variants(item: Scenario, config: pytest.Config) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """(the name's extra parts, params): the --lab-set values the scenario has, then with --lab-variants
    each other value of each of its choices."""
    sets = [s for s in config.getoption("--lab-set") if s.partition("=")[0] in item.params]
    params = item.parse_sets(sets)
    yield sets, params
    if config.getoption("--lab-variants"):
        for key, values in item.choices.items():
            others = [s for s in sets if s.partition("=")[0] != key]
            for value in values:
                if value != params[key]:
                    yield [*others, f"{key}={value}"], item.parse_sets([*others, f"{key}={value}"])


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, image: str, params: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario, self.image, self.params = scenario, image, params
        for tag in scenario.tags - TAGS:
            _add_tag(self.config, tag)
        for mark in ("vm", *sorted(scenario.tags)):
            self.add_marker(mark)

    def runtest(self) -> None:
        """The run, under the lab's one policy for failures (`lab run`'s): a failure of the lab's is re-run
        with --lab-rerun-failed N, the guest's too with --lab-rerun-guest-failures, a pass after failures is
        flaky, a failure a known issue covers is an expected failure (xfail) until the issue expires."""
        option = self.config.getoption
        request = _request(self.config, self.scenario, self.params, self.image)
        code, run, result = settled_run(_settings(self.config), request, _run_log(self.config),
                                        option("--lab-rerun-failed"),
                                        guest_failures=option("--lab-rerun-guest-failures"),
                                        make_run=lambda attempt: _run(self.config, attempt))
        _record(self, run)
        if result is not None and result.status in ("flaky", "known"):
            self.user_properties.append((STATUS, result.status))
        if result is not None and result.status == "known":
            pytest.xfail(f"known issue {result.known_issue.get('tracker')} (until {result.known_issue.get('expires')})"
                         f": {result.failure.partition(chr(10))[0]}")
        if code != 0:
            raise RunFailed(code, result.failure if result and result.failure else f"the run ended with exit {code}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, RunFailed):
            return str(excinfo.value)  # names the step, the command, the console tail and the artifacts
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.scenario.func.__code__.co_firstlineno - 1, f"scenario {self.name}"


# --- the machine fixture ---------------------------------------------------------------------------


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[ScenarioContext]:
    """A booted guest for this test, as a scenario would get it (shape: @pytest.mark.lab(...))."""
    marker = request.node.get_closest_marker("lab")
    shape = dict(marker.kwargs) if marker else {}
    host = shape.pop("host", None)  # an sosreport: the guest gets that host's storage first (lab replay)
    image = shape.pop("image", None) or (replay.REPLAY_IMAGE if host else None)
    replayed = replay.prepare(Path(host), None, image or "", _settings(request.config).images_dirs) if host else None
    if replayed:
        shape["disks"] = (*shape.get("disks", ()), *replayed[1].disks)
        shape["timeout"] = shape.get("timeout", DEFAULT_TIMEOUT) + replay.TIMEOUT
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    doc = (request.function.__doc__ or "").strip().splitlines()
    spec = declare(name, doc[0] if doc else name, request.function, image=image, **shape)
    run = _run(request.config, _request(request.config, spec, {}, image))
    try:
        with run.session() as ctx:
            if replayed:
                replay.recreate(ctx, *replayed)
            yield ctx
            failure = request.node.stash.get(_CALL_FAILED, None)
            if failure is not None:
                raise failure  # the run collects evidence and records the test's failure
    except RunFailed:
        if request.node.stash.get(_CALL_FAILED, None) is None:
            raise  # a failed boot or health check; a failed test was reported already
    finally:
        _record(request.node, run)


@pytest.fixture
def machine(lab: ScenarioContext) -> Machine:
    """The booted guest's Machine API: succeed, fail, wait_until_succeeds, wait_for_unit, reboot, ..."""
    return lab.machine


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and report.failed and call.excinfo is not None:
        item.stash[_CALL_FAILED] = call.excinfo.value
    if os.environ.get("CI") and "vm" in item.keywords and report.skipped and not hasattr(report, "wasxfail") \
            and not any(ok in str(report.longrepr) for ok in (NIGHTLY_ONLY, EXTERNAL_ABSENT)):
        report.outcome = "failed"  # under CI a VM test must run (a known issue's expected failure did run)
        report.longrepr = f"VM test skipped under CI: {report.longrepr}"
    return report


def _request(config: pytest.Config, spec: Scenario, params: dict[str, Any], image: str | None) -> RunRequest:
    option = config.getoption
    return RunRequest(spec, params, image=image, cold=option("--lab-cold"), keep=option("--lab-keep"),
                      keep_on_failure=option("--lab-keep-on-failure"), sit=option("--lab-sit"))


def _run(config: pytest.Config, request: RunRequest) -> Run:
    run = Run(_settings(config), request, _run_log(config))
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture:  # --lab-sit reads Enter from the terminal, past pytest's capture

        def pause(limit: float, shell: Callable[[], None]) -> str:
            with capture.global_and_fixture_disabled():
                return wait_for_enter(limit, shell)

        run.pause = pause
    return run


def _run_log(config: pytest.Config) -> Log:
    """A run's log goes to its transcript; to the terminal too only under `-s`, where it shows live. A
    failure's report is then the run's own: step, command, cause, console tail and the artifacts path,
    without the run's whole log captured beside it."""
    return Log() if config.getoption("capture") == "no" else Log(terminal=False)


def _record(item: pytest.Item, run: Run) -> None:
    if run.artifacts is not None:
        item.user_properties += [("run_id", run.run_id), ("artifacts", str(run.artifacts)),
                                 (RESULT, str(run.artifacts / "result.json"))]

# PYTHON_ARGCOMPLETE_OK
"""The `lab` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.base.config import DEFAULT_POOL, Config
from lab.base.errors import LabError, UsageError
from lab.base.log import Log, configure_terminal
from lab.doors import cli_images, cli_kept, cli_report, completion, report
from lab.doors.parallel import Job, ParallelRuns, exit_code, outcome_of, shard
from lab.doors.tables import print_table
from lab.replay import replay
from lab.run import bundle
from lab.run.record import RESULT, RunResult, find_run_dir
from lab.run.reruns import run_with_reruns
from lab.run.runner import RUN_ID, RunRequest
from lab.scenario import Registry
from lab.virt.cleanup import inventory, reap, run_alive
from lab.virt.hypervisor import connect, kvm_available
from lab.virt.storage import Pool, forget_gone_pools


def cmd_list(args: argparse.Namespace, config: Config, log: Log) -> int:
    items = Registry.load(config.scenarios_dirs).all()
    if args.json:
        print(json.dumps([{"name": s.name, "description": s.description, "image": s.image or config.default_image,
                           "tags": sorted(s.tags), "params": {k: t.as_dict() for k, t in s.types.items()},
                           "stand_ins": [vars(stand_in) for stand_in in s.stand_ins],
                           "covers": [vars(covers) for covers in s.covers]}
                          for s in items], indent=2))
    if not args.json:
        print_table(("scenario", "description"), [
            (item.name, item.description + (f"  [stand-ins: {', '.join(s.component for s in item.stand_ins)}]"
                                            if item.stand_ins else "")) for item in items])
    return 0


def cmd_config(args: argparse.Namespace, config: Config, log: Log) -> int:
    """Every setting's effective value and where it came from (default, pyproject.toml, environment)."""
    rows = config.describe()
    if args.json:
        print(json.dumps([{"name": name, "value": value, "source": source} for name, value, source in rows], indent=2))
        return 0
    print_table(("setting", "value", "from"), [(name, str(value), source) for name, value, source in rows])
    return 0


def cmd_replay(args: argparse.Namespace, config: Config, log: Log) -> int:
    """Boot a guest whose storage is the host's in SOSREPORT, compare, and run --scenario on it if asked."""
    then = Registry.load(config.scenarios_dirs).get(args.scenario) if args.scenario else None
    image = args.image or replay.REPLAY_IMAGE
    layout, the_plan = replay.prepare(Path(args.sosreport), args.scale, image, config.images_dirs)
    spec = replay.replay_scenario(layout, the_plan, then)
    request = RunRequest(spec, dict(then.params) if then else {}, image=image, keep=args.keep)
    return run_with_reruns(config, request, log, 0)


def cmd_bundle(args: argparse.Namespace, config: Config, log: Log) -> int:
    """One archive of a run for a colleague: artifacts, scenario source, image recipe, cloud-init templates."""
    run_dir = find_run_dir(config.runs_dir, args.run_id)
    if run_dir is None:
        raise UsageError(f"no run {args.run_id!r} in {config.runs_dir}")
    if args.list:
        taken, left = bundle.packed(run_dir)
        print("\n".join([*(f"packs  {p.relative_to(run_dir)}" for p in taken),
                         *(f"leaves {p.relative_to(run_dir)} (a secret)" for p in left)]))
        return 0
    out = Path(args.output or f"lab-bundle-{run_dir.name}.tar.gz")
    print(f"wrote {bundle.pack(run_dir, out)}")
    return 0


def _confirmed(question: str) -> bool:
    """A yes typed at a terminal; never a yes without one (CI, pipes)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_rerun(args: argparse.Namespace, config: Config, log: Log) -> int:
    """The bundle's scenario, params and image recipe, run here; first, where this checkout differs."""
    with bundle.opened(Path(args.bundle)) as run_dir:
        for line in bundle.differences(run_dir, config) or ["this checkout's scenario source and recipe are "
                                                            "the bundle's"]:
            print(line)
        if not (args.trust or _confirmed("The bundle's scenario and recipe are code that runs here as you. Run it?")):
            raise UsageError(f"{args.bundle}: a bundle is code (its scenario source, its image recipe): read them "
                             f"(tar -tzf {args.bundle}), then rerun with --trust")
        scenario, params, image, recipes = bundle.bundled_scenario(run_dir)
        here = dataclasses.replace(config, images_dirs=config.images_dirs + recipes)
        return run_with_reruns(here, RunRequest(scenario, params, image=image), log, 0)


def cmd_run(args: argparse.Namespace, config: Config, log: Log) -> int:
    registry = Registry.load(config.scenarios_dirs)
    names = registry.names() if args.all else args.names
    if not names:
        raise UsageError("name a scenario (see `lab list`) or use --all")
    template = RunRequest(registry.get(names[0]), {}, image=args.image, keep=args.keep, cold=args.cold,
                          keep_on_failure=args.keep_on_failure, sit=args.sit)
    if len(names) == 1 and not args.all and not args.shard:
        item = template.scenario
        request = dataclasses.replace(template, params=item.parse_sets(args.set),
                                      run_id=args.run_id or secrets.token_hex(4))
        start = time.monotonic()
        code = run_with_reruns(config, request, log, args.rerun_failed, guest_failures=args.rerun_guest_failures)
        run_dir = find_run_dir(config.runs_dir, str(request.run_id)) if args.json else None
        if run_dir is not None:  # the run's record, as result.json holds it
            print(json.dumps(dataclasses.asdict(RunResult.load(run_dir / RESULT)), indent=2, default=str))
        if args.report:
            done = outcome_of(config.runs_dir, Job(item.name, args.image, run_id=str(request.run_id)), code,
                              time.monotonic() - start)
            print("reports: " + ", ".join(str(p) for p in report.write(args.report, [done], done.wall, 1)))
        return code
    if args.set or args.run_id or args.sit:
        raise UsageError("--set, --run-id and --sit apply to one scenario; run several without them")
    flags = (*template.flags(), *(("--rerun-failed", str(args.rerun_failed)) if args.rerun_failed else ()),
             *(("--rerun-guest-failures",) if args.rerun_guest_failures else ()))
    jobs = [Job(registry.get(name).name, args.image, flags) for name in names]
    jobs = shard(jobs, args.shard, key=lambda job: job.label) if args.shard else jobs
    start = time.monotonic()
    outcomes = ParallelRuns(config.runs_dir, args.jobs, sys.stderr if args.json else sys.stdout).run(jobs)
    wall = time.monotonic() - start
    print(report.table(outcomes, wall, args.jobs), file=sys.stderr if args.json else sys.stdout)
    if args.json:  # one object per run: what the summary table shows
        print(json.dumps([{"scenario": o.job.scenario, "run_id": o.job.run_id, "image": o.image, "status": o.status,
                           "exit_code": o.exit_code, "wall_seconds": round(o.wall, 1), "artifacts": o.artifacts}
                          for o in outcomes], indent=2))
    if args.report:
        print("reports: " + ", ".join(str(p) for p in report.write(args.report, outcomes, wall, args.jobs)))
    return exit_code(outcomes)


def _pool(config: Config) -> Pool:
    return Pool(connect(config.libvirt_uri), config.pool_name, config.pool_dir)


def cmd_destroy(args: argparse.Namespace, config: Config, log: Log) -> int:
    pool = _pool(config)
    reaped = reap(pool.conn, pool, config.state_dir, log, run_ids=set(args.run_ids))
    missing = set(args.run_ids) - {r.run_id for r in reaped}
    for run in reaped:
        run_dir = find_run_dir(config.runs_dir, run.run_id)
        if run_dir:
            (run_dir / "id_ed25519").unlink(missing_ok=True)
        print(f"destroyed run {run.run_id}: {len(run.domains)} domain(s), {len(run.volumes)} volume(s)")
    if missing:
        print(f"lab: no lab objects for run(s) {', '.join(sorted(missing))}", file=sys.stderr)
        return 2
    return 0


def cmd_cleanup(args: argparse.Namespace, config: Config, log: Log) -> int:
    pool = _pool(config)
    if args.list:
        rows = [{"run_id": run_id, "domains": [d.name() for d in objects.domains], "volumes": objects.volumes,
                 "state": "kept" if objects.kept else "running" if run_alive(config.state_dir, run_id)
                 or objects.owner_alive() else "orphaned"}
                for run_id, objects in sorted(inventory(pool.conn, pool).items())]
        for row in [] if args.json else rows:
            print(f"{row['run_id']}  {row['state']:<9} domains: {len(row['domains'])}  volumes: {len(row['volumes'])}")
        if args.json:
            print(json.dumps(rows, indent=2))
        return 0
    reaped = reap(pool.conn, pool, config.state_dir, log, include_kept=args.all)
    # a remote host's directories cannot be seen from here
    forgotten = forget_gone_pools(pool.conn, DEFAULT_POOL) if config.libvirt_host is None else []
    if args.json:
        print(json.dumps({"removed": [{"run_id": run.run_id, "domains": len(run.domains), "volumes": run.volumes}
                                      for run in reaped], "undefined_pools": forgotten}, indent=2))
        return 0
    for run in reaped:
        print(f"removed run {run.run_id}: {len(run.domains)} domain(s), {len(run.volumes)} volume(s)")
    for name in forgotten:
        print(f"undefined pool {name}: its cache directory is gone")
    print(f"{len(reaped)} run(s) cleaned up")
    return 0


def cmd_doctor(args: argparse.Namespace, config: Config, log: Log) -> int:
    found: list[dict[str, Any]] = []

    def check(ok: bool, what: str, fix: str = "") -> None:
        found.append({"ok": ok, "what": what, **({"fix": fix} if not ok and fix else {})})
        if not args.json:
            print(f"[{'ok' if ok else 'FAIL'}] {what}" + (f"\n       fix: {fix}" if not ok and fix else ""))

    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                          ("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs")):
        check(shutil.which(tool) is not None, f"{tool} installed", f"make setup (or apt-get install {package})")
    try:
        conn = connect(config.libvirt_uri)
        check(True, f"libvirt reachable at {config.libvirt_uri} (libvirt {conn.getLibVersion()})")
        kvm = kvm_available(conn)
        accel = (f"KVM {'offered' if kvm else 'not offered'} by libvirt; LAB_ACCEL={config.accel}; a first run "
                 "probes whether KVM really boots a guest, else TCG")
        found.append({"info": f"accelerator: {accel}"})
        if not args.json:
            print(f"[info] accelerator: {accel}")
        where = Pool(conn, config.pool_name, config.pool_dir).defined_at()
        check(where in (None, config.pool_dir),
              f"cache directory {config.cache_dir}: libvirt pool {config.pool_name!r} "
              + (f"at {where}" if where else f"(made at {config.pool_dir} by the first run)"),
              f"LAB_POOL=<another name> for a pool of this cache's own, or LAB_CACHE_DIR={where and where.parent}")
    except LabError as exc:
        check(False, str(exc))
    existing = next(p for p in (config.cache_dir, *config.cache_dir.parents) if p.exists())  # doctor makes nothing
    free_gib = shutil.disk_usage(existing).free / 2**30
    check(free_gib >= 10, f"{free_gib:.1f} GiB free in {config.cache_dir} (10 GiB wanted)",
          "free space or point LAB_CACHE_DIR elsewhere")
    problems = sum(not item.get("ok", True) for item in found)
    if args.json:
        print(json.dumps({"problems": problems, "checks": found}, indent=2))
    return 1 if problems else 0


def _run_id(text: str) -> str:
    if not RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id (4-16 lowercase hex digits)")
    return text


def _run_ref(text: str) -> str:
    """A run id, or 'latest'."""
    return text if text == "latest" else _run_id(text)


def _resolve(config: Config, run_id: str) -> str:
    """'latest' is the run runs/latest points at."""
    if run_id != "latest":
        return run_id
    result = config.runs_dir / "latest" / RESULT
    if not result.is_file():
        raise UsageError(f"no latest run under {config.runs_dir} (LAB_RUNS_DIR)")
    return RunResult.load(result).run_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Reproduce container-host field bugs in "
                                     "disposable libvirt VMs.")
    parser.add_argument("--version", action="version", version=f"lab (atomic-lab) {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also show command outputs and paramiko's records (the transcript's detail)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and the result")
    sub = parser.add_subparsers(dest="command", required=True)
    listed = sub.add_parser("list", help="list scenarios")
    listed.add_argument("--json", action="store_true", help="as JSON: name, description, image, tags, params")
    listed.set_defaults(func=cmd_list)
    settings = sub.add_parser("config", help="print the settings and where each came from")
    settings.add_argument("--json", action="store_true", help="as JSON: name, value, source")
    settings.set_defaults(func=cmd_config)
    pack = sub.add_parser("bundle", help="pack a run for a colleague (artifacts, scenario source, image recipe)")
    pack.add_argument("run_id", type=_run_ref, help="a run id or 'latest'")
    pack.add_argument("-o", "--output", help="the archive to write (default lab-bundle-<run>.tar.gz)")
    pack.add_argument("--list", action="store_true", help="print what it would pack and leave out; write nothing")
    pack.set_defaults(func=cmd_bundle)
    again = sub.add_parser("rerun", help="rerun a bundle's scenario with its params on its image recipe")
    again.add_argument("bundle", help="an archive lab bundle wrote")
    again.add_argument("--trust", action="store_true",
                       help="run the bundle's code (its scenario and recipe) without asking; a bundle is code")
    again.set_defaults(func=cmd_rerun)
    rep = sub.add_parser("replay", help="boot a guest with a host's storage, from the host's sosreport")
    rep.add_argument("sosreport", help="an sos archive (sosreport-*.tar.xz/.gz) or its extracted directory")
    rep.add_argument("--scale", type=float, help="size factor (default: the host's disks fit the lab's budget)")
    rep.add_argument("--keep", action="store_true", help="leave the replayed host running")
    rep.add_argument("--scenario", metavar="NAME", help="then run this scenario on the replayed host")
    rep.add_argument("--image", help=f"the guest's image (default {replay.REPLAY_IMAGE}; its root must not be LVM)")
    rep.set_defaults(func=cmd_replay)
    _add_run_parser(sub)
    cli_kept.add_parsers(sub, _run_ref)
    cli_report.add_parsers(sub, _run_ref)
    destroy = sub.add_parser("destroy", help="remove a kept run's VM and volumes")
    destroy.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    destroy.set_defaults(func=cmd_destroy)
    cleanup = sub.add_parser("cleanup", help="remove what dead runs left behind")
    cleanup.add_argument("--all", action="store_true", help="also remove kept VMs")
    cleanup.add_argument("--list", action="store_true", help="only list lab objects and their state")
    cleanup.add_argument("--json", action="store_true",
                         help="as JSON: what it removed ({removed, undefined_pools}), or with --list the objects")
    cleanup.set_defaults(func=cmd_cleanup)
    doctor = sub.add_parser("doctor", help="check this host can run the lab")
    doctor.add_argument("--json", action="store_true", help="as JSON: problems, and each check (ok, what, fix)")
    doctor.set_defaults(func=cmd_doctor)
    cli_images.add_parsers(sub)
    return parser


def _add_run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run scenarios, each in a fresh VM", add_help=False)
    run.add_argument("-h", "--help", action=_RunHelp, nargs=0,
                     help="this help; after a scenario's name, also its parameters")
    run.add_argument("names", nargs="*", metavar="NAME", help="scenario(s) to run (see `lab list`)")
    run.add_argument("--all", action="store_true", help="run every scenario")
    run.add_argument("-j", "--jobs", type=int, default=1, help="how many runs at once (default 1)")
    run.add_argument("--report", type=Path, metavar="DIR",
                     help="with several scenarios: write summary.md, summary.json and junit.xml there")
    run.add_argument("--shard", metavar="K/N", help="run only the K-th of N deterministic slices (CI matrix)")
    run.add_argument("--run-id", type=_run_id, help="use this run id (hex) instead of a random one")
    run.add_argument("--image", help="image name (see `lab images list`) or path to a qcow2/raw disk")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    run.add_argument("--keep", action="store_true", help="leave the VM running and print how to enter it")
    run.add_argument("--keep-on-failure", action="store_true", help="leave the VM running if the run fails")
    run.add_argument("--sit", action="store_true",
                     help="if the run fails, wait before teardown (Enter, or sit-timeout) and say how to enter it")
    run.add_argument("--rerun-failed", type=int, default=0, metavar="N",
                     help="re-run a run the lab failed (exit 2) up to N times in a fresh VM; a later pass is flaky")
    run.add_argument("--rerun-guest-failures", action="store_true",
                     help="with --rerun-failed: also re-run when the guest misbehaved (exit 1)")
    run.add_argument("--cold", action="store_true", help="boot the VM instead of restoring a saved, booted guest")
    run.add_argument("--json", action="store_true",
                     help="print the run's record (result.json) on stdout; with several, one object per run")
    run.set_defaults(func=cmd_run)


class _RunHelp(argparse.Action):
    """`lab run NAME --help`: the options, then each named scenario's parameters and what each takes."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.print_help()
        names = getattr(namespace, "names", None) or []
        found = {s.name: s for s in Registry.load(Config.from_env().scenarios_dirs).all()} if names else {}
        for name in names:
            item = found.get(name)
            print(f"\n{name}: no such scenario (lab list)" if item is None else f"\n{item.name}: {item.description}")
            for key, param in (item.types if item else {}).items():
                print(f"  --set {key + '=...':<22} {param.describe()}; default {param.default}")
        parser.exit()


def _version() -> str:
    try:
        return importlib.metadata.version("atomic-lab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    completion.enable(parser)  # when the shell asks for completions, this answers and exits
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Config, Log], int] = args.func
    try:
        config = Config.from_env()
        if args.command != "run" and getattr(args, "run_id", None) == "latest":
            args.run_id = _resolve(config, args.run_id)
        configure_terminal(args.verbose - args.quiet)
        return handler(args, config, Log())
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lab list | head`: the reader left; say nothing more on a closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as exc:  # a bug of the lab's: one line here, the traceback in a file
        print(f"lab: internal error: {type(exc).__name__}: {exc} (traceback: {_trace_file()})", file=sys.stderr)
        return 2


def _trace_file() -> str:
    """The current traceback in a new private file (mkstemp: a name nobody can predict or plant a link at), in
    the runs directory when there is one, else the temporary directory."""
    directory: Path | None = None
    try:
        runs = Config.from_env().runs_dir
        directory = runs if runs.is_dir() else None
    except Exception:  # the settings themselves may be what failed
        directory = None
    fd, path = tempfile.mkstemp(prefix="lab-error-", suffix=".txt", dir=directory)
    with os.fdopen(fd, "w") as out:
        out.write(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())

"""The commands on a kept run's guest: log in (`lab ssh`), an OpenSSH config for other tools
(`lab ssh-config`), its console (printed, or typed into with -i). The guest's host key is the one the lab
pinned during the run."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.base.log import Log
from lab.run.record import RESULT, RunResult, find_run_dir
from lab.virt.console import interact, run_event_loop
from lab.virt.hypervisor import connect, require_lab_domain
from lab.virt.storage import RUN_PREFIX

KNOWN_HOSTS = "known_hosts"  # in the run's directory: the pinned host key under the alias lab-<run id>


def _kept_run(config: Config, run_id: str) -> RunResult:
    """The record of a run whose VM is still up."""
    run_dir = find_run_dir(config.runs_dir, run_id)
    if run_dir is None:
        raise UsageError(f"no run {run_id!r} under {config.runs_dir} (LAB_RUNS_DIR)")
    result = RunResult.load(run_dir / RESULT)
    if not result.kept:
        raise UsageError(f"run {run_id} did not keep its VM (use --keep or --keep-on-failure)")
    require_lab_domain(connect(config.libvirt_uri), run_id)
    return result


def _logins(result: RunResult, machine: str | None) -> dict[str, dict[str, Any]]:
    """The logins of a kept run's guests by ssh alias (lab-<run id>, or lab-<run id>-<machine> for a run
    with several), `machine` alone if given."""
    run_id, machines = result.run_id, result.machines
    if not machines:
        if machine not in (None, "vm1"):
            raise UsageError(f"run {run_id} has one machine (vm1), not {machine!r}")
        return {f"lab-{run_id}": result.ssh}
    if machine is not None and machine not in machines:
        raise UsageError(f"run {run_id} has no machine {machine!r} (machines: {', '.join(machines)})")
    return {f"lab-{run_id}-{name}": login for name, login in machines.items() if machine in (None, name)}


def cmd_ssh(args: argparse.Namespace, config: Config, log: Log) -> int:
    result = _kept_run(config, args.run_id)
    alias, login = next(iter(_logins(result, args.machine).items()))  # a run's first machine by default
    argv = ["ssh", *_options(config, result, alias, login), f"{login['user']}@127.0.0.1", *args.command]
    os.execvp("ssh", argv)


def cmd_ssh_config(args: argparse.Namespace, config: Config, log: Log) -> int:
    """`Host lab-<run id>[-<machine>]` for ssh -F, scp, ansible and testinfra (--ssh-config)."""
    result = _kept_run(config, args.run_id)
    hop = _jump(config)  # ["-o", "ProxyCommand=..."] for a remote libvirt host
    blocks = []
    for alias, ssh in _logins(result, args.machine).items():
        lines = [f"Host {alias}", "  HostName 127.0.0.1", f"  Port {ssh['port']}", f"  User {ssh['user']}",
                 f"  IdentityFile {ssh['key']}", "  IdentitiesOnly yes", *_pinned(result, alias, ssh)]
        blocks.append("\n".join([*lines, f"  {hop[1].replace('=', ' ', 1)}"] if hop else lines))
    print("\n\n".join(blocks))
    return 0


def _options(config: Config, result: RunResult, alias: str, ssh: dict[str, Any]) -> list[str]:
    pinned = [f"-o{line.strip().replace(' ', '=', 1)}" for line in _pinned(result, alias, ssh)]
    return ["-i", ssh["key"], "-p", str(ssh["port"]), "-o", "IdentitiesOnly=yes", *pinned, "-o", "LogLevel=ERROR",
            *_jump(config)]


def _pinned(result: RunResult, alias: str, ssh: dict[str, Any]) -> list[str]:
    """ssh_config lines that accept only the host key the lab pinned (written to the run's known_hosts)."""
    key = ssh.get("host_key", "")
    if not key:
        raise UsageError(f"{alias}: its run recorded no SSH host key (an older lab's run): the lab will not write "
                         "a login that skips checking it")
    known = Path(result.artifacts) / KNOWN_HOSTS
    kept = [line for line in (known.read_text().splitlines() if known.exists() else [])
            if not line.startswith(f"{alias} ")]
    known.write_text("".join(f"{line}\n" for line in [*kept, f"{alias} {key}"]))
    return [f"  HostKeyAlias {alias}", f"  UserKnownHostsFile {known}", "  StrictHostKeyChecking yes"]


def _jump(config: Config) -> list[str]:
    """ssh options that reach a remote libvirt host's loopback, where the guest's port is forwarded."""
    host = config.libvirt_host
    if host is None:
        return []
    hop = ["ssh", "-W", "%h:%p", "-p", str(host.port), *(["-i", host.keyfile] if host.keyfile else []),
           *([] if host.verify else ["-o", "StrictHostKeyChecking=no"]), f"{host.user}@{host.host}"]
    return ["-o", f"ProxyCommand={shlex.join(hop)}"]


def cmd_console(args: argparse.Namespace, config: Config, log: Log) -> int:
    if args.interactive:
        return _type_into_console(args, config)
    result = _kept_run(config, args.run_id)
    _logins(result, args.machine)  # an unknown machine name fails here
    several = list(result.machines)
    console = Path(result.artifacts) / (args.machine or several[0] if several else "") / "console.log"
    os.execvp("tail", ["tail", "-n", "+1", *(["-f"] if args.follow else []), str(console)])




def _type_into_console(args: argparse.Namespace, config: Config) -> int:
    """`lab console RUN -i`: this terminal on the guest's serial console (GRUB, a login, an emergency shell)."""
    if not sys.stdin.isatty():
        raise UsageError("lab console -i types into the guest's console: it needs a terminal")
    run_event_loop()  # before the connection opens: the console stream is read from libvirt's event loop
    result = _kept_run(config, args.run_id)
    _logins(result, args.machine)  # an unknown machine name fails here
    name = f"{RUN_PREFIX}{result.run_id}-{args.machine or next(iter(result.machines), 'vm1')}"
    conn = connect(config.libvirt_uri)
    found = next((d for d in require_lab_domain(conn, result.run_id) if d.name == name), None)
    if found is None:
        raise UsageError(f"run {result.run_id}: no running VM {name}")
    print(f"{name}'s serial console; Ctrl-] leaves it", file=sys.stderr)
    interact(conn, found.dom)
    print(f"\r\n(left {name}'s console)", file=sys.stderr)
    return 0


def add_parsers(sub: Any, run_ref: Callable[[str], str]) -> None:
    ssh = sub.add_parser("ssh", help="log in to a kept run's VM (or run a command there)")
    ssh.add_argument("run_id", metavar="RUN_ID", type=run_ref, help="a kept run's id, or latest")
    _machine_option(ssh, "the run's first machine")
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="a command to run instead of a shell")
    ssh.set_defaults(func=cmd_ssh)
    config = sub.add_parser("ssh-config", help="an OpenSSH config for a kept run's VM, with its pinned host key")
    config.add_argument("run_id", metavar="RUN_ID", type=run_ref, help="a kept run's id, or latest")
    _machine_option(config, "a Host block for each machine")
    config.set_defaults(func=cmd_ssh_config)
    console = sub.add_parser("console", help="print a kept run's serial console, or type into it (-i)")
    console.add_argument("run_id", metavar="RUN_ID", type=run_ref, help="a kept run's id, or latest")
    _machine_option(console, "the run's first machine")
    console.add_argument("-f", "--follow", action="store_true", help="keep printing as the guest writes")
    console.add_argument("-i", "--interactive", action="store_true",
                         help="type into the console (GRUB's menu, a login, an emergency shell); Ctrl-] leaves")
    console.set_defaults(func=cmd_console)


def _machine_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("-m", "--machine", metavar="NAME",
                        help=f"which guest of a run with several (default: {default})")

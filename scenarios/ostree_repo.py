"""ostree-repo: the wiki's build-server repository: `ostree init --mode=archive-z2`, commits, refs, log, fsck.

fedora-atomic-wiki.txt, "Compose Ostree": `ostree --repo=repo init --mode=archive-z2` (`ls repo`: extensions
objects refs state tmp config), a tree committed on `fedora/28/x86_64/atomic-host`, `ostree fsck` ("Verifying
content integrity of 485 commit objects..."), `ostree refs` and `ostree log` (commit, ContentChecksum, Date,
Version, "(no subject)"). bookworm has no rpm-ostree to compose with: the tree is committed with ostree's own
`commit`, which is what a compose ends in. Then one object is damaged and fsck finds it.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.scenario import reproduced, scenario

REPO, REF = "/srv/build/repo", "fedora/28/x86_64/atomic-host"
OSTREE = f"ostree --repo={REPO}"


@scenario(
    "ostree-repo",
    "a build server's OSTree repository: init --mode=archive-z2, two commits on the wiki's ref, refs, log, "
    "fsck clean, then fsck finding a damaged one (Fedora Atomic wiki)",
    image="lab-bookworm",
    memory=768,
    tags=("ostree", "catalog"),
    covers=(reproduced("ostree-repo", "the tree is committed with `ostree commit`: bookworm has no "
                                      "`rpm-ostree compose tree`"),),
    timeout=600,
)
def ostree_repo(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("ostree init --mode=archive-z2: the wiki's directory layout"):
        vm.succeed(f"mkdir -p {REPO} && {OSTREE} init --mode=archive-z2")
        assert vm.succeed(f"ls {REPO}").split() == ["config", "extensions", "objects", "refs", "state", "tmp"]
        lab.record("core_mode", vm.succeed(f"{OSTREE} config get core.mode").strip())
        lab.evidence("config.txt", vm.succeed(f"cat {REPO}/config"))
    with lab.step(f"two commits of a tree on {REF}; refs lists the ref, log both commits"):
        for version in ("28", "28.1"):
            vm.succeed(f"mkdir -p /srv/build/tree/usr/share/lab && echo {version} > /srv/build/tree/usr/share/lab/v")
            vm.succeed(f"{OSTREE} commit -b {REF} --add-metadata-string=version={version} --tree=dir=/srv/build/tree")
        assert vm.succeed(f"{OSTREE} refs").split() == [REF]
        log = vm.succeed(f"{OSTREE} log {REF}")
        lab.evidence("log.txt", log)
        lines = [line.strip() for line in log.splitlines()]
        assert sum(line.startswith("commit ") for line in lines) == 2, log
        assert {"Version: 28.1", "Version: 28", "(no subject)"} <= set(lines), log
        assert sum(line.startswith("ContentChecksum:") for line in lines) == 2, log
    with lab.step("fsck: both commits verified; one damaged file object is found"):
        clean = vm.succeed(f"{OSTREE} fsck 2>&1")
        lab.evidence("fsck-clean.txt", clean)
        assert "Verifying content integrity of 2 commit objects..." in clean, clean
        damaged = vm.succeed(f"find {REPO}/objects -name '*.dirtree' | head -n1").strip()
        checksum = "".join(damaged.removesuffix(".dirtree").rsplit("/", 2)[-2:])
        vm.succeed(f"printf X | dd of={damaged} bs=1 conv=notrunc status=none")
        said = vm.fail(f"{OSTREE} fsck", 1)
        lab.evidence("fsck-damaged.txt", said)
        assert "Corrupted dirtree object" in said and checksum in said, said

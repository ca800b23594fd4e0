"""buildah-docker: an image built with buildah is not docker's until `buildah push … docker-daemon:`.

atomic-host-operator-blog.txt, "Buildah": the image buildah builds "is not available to the Docker
daemon by default, because it's in /var/lib/containers", and "the buildah push command from the host can
copy the image to a local Docker daemon's storage: buildah push IMAGE:TAG docker-daemon:IMAGE:TAG". The
image is built the blog's way, offline: `buildah from scratch`, the program copied into the mounted
container (busybox here, the blog compiles GNU hello), a label and an entrypoint, `buildah commit
--format docker`.
"""

from __future__ import annotations

from lab.containers import start_docker
from lab.context import ScenarioContext
from lab.scenario import reproduced, scenario

IMAGE = "localhost/hello:latest"
GREETING = "hello from buildah"
MAINTAINER = "lab <lab@example.invalid>"
# Three instructions that each change the image (exec form: the image has busybox, no /bin/sh)
DOCKERFILE = (f"FROM {IMAGE}\n" + "".join(f'RUN ["/bin/busybox", "touch", "/step-{n}"]\n' for n in (1, 2, 3)))
COUNT = "{} images -a -q | sort -u | wc -l"


@scenario(
    "buildah-docker",
    "an image built with buildah is invisible to docker until `buildah push … docker-daemon:`; then docker "
    "runs it (operator blog)",
    image="lab-atomic",
    memory=1024,
    tags=("containers", "catalog"),
    covers=(
        reproduced("buildah-invisible"),
        reproduced("buildah-push-daemon"),
        reproduced("buildah-bud-layers", "shown against docker 20.10's legacy builder, which keeps an image per "
                                         "instruction; `buildah bud --layers` would keep them too"),
    ),
    timeout=900,
)
def buildah_docker(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("buildah: from scratch, busybox copied into the mounted container, label, entrypoint, commit"):
        container = vm.succeed("buildah from scratch", timeout=300).strip()
        mount = vm.succeed(f"buildah mount {container}").strip()
        vm.succeed(f"mkdir -p {mount}/bin && cp /bin/busybox {mount}/bin/busybox && "
                   f"chroot {mount} /bin/busybox true")
        vm.succeed(f"buildah config --label maintainer='{MAINTAINER}' "
                   f"--entrypoint '[\"/bin/busybox\", \"echo\", \"{GREETING}\"]' {container}")
        vm.succeed(f"buildah commit --format docker {container} {IMAGE} && buildah unmount {container} && "
                   f"buildah rm {container}", timeout=300)
        listed = vm.succeed("buildah images --format '{{.Name}}:{{.Tag}}'")
        assert IMAGE in listed.split(), listed

    with lab.step("docker does not see it: its images are not in /var/lib/containers"):
        start_docker(vm, {"storage-driver": "overlay2"})
        lab.evidence("docker-images-before.txt", vm.succeed("docker images"))
        vm.fail(f"docker image inspect {IMAGE} 2>&1", f"No such image: {IMAGE}")

    with lab.step("buildah push to docker-daemon: docker lists it, runs its entrypoint, shows its label"):
        vm.succeed(f"buildah push {IMAGE} docker-daemon:{IMAGE}", timeout=300)
        lab.evidence("docker-images-after.txt", vm.succeed("docker images"))
        assert vm.succeed(f"docker run --rm {IMAGE}", timeout=300).strip() == GREETING
        label = vm.succeed(f"docker image inspect -f '{{{{index .Config.Labels \"maintainer\"}}}}' {IMAGE}")
        assert label.strip() == MAINTAINER, label

    with lab.step("the same Dockerfile: buildah bud adds one image, docker build one per RUN (two untagged)"):
        vm.write_file("/root/bud/Dockerfile", DOCKERFILE)
        added = {}
        for engine, build in (("buildah", "buildah bud -t localhost/bud:buildah /root/bud"),
                              ("docker", "docker build -t localhost/bud:docker /root/bud")):
            before = int(vm.succeed(COUNT.format(engine)))
            lab.evidence(f"{engine}-build.txt", vm.succeed(f"{build} 2>&1", timeout=600))
            added[engine] = int(vm.succeed(COUNT.format(engine))) - before
        lab.evidence("docker-images-a.txt", vm.succeed("docker images -a"))
        lab.record("images_added", added)
        assert added == {"buildah": 1, "docker": 3}, added

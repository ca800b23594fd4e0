"""image-trust: a signature-requiring trust policy for local images, keys made in the guest.

containers-storage-slides.txt, "Simple Image Signing": images signed with GPG (`skopeo copy
--sign-by`) and a policy in /etc/containers/policy.json that requires the signer's key; "Multiple
people/companies can sign same image": a second signature added to a signed image, and a policy that
requires both signers. No registry is reachable, so the images live under `dir:` locations, which keep
their signatures beside them (a web server's lookaside store serves registries' images only); the
messages are containers/image's (skopeo 1.9, podman 4.3) as the guest prints them.
"""

from __future__ import annotations

import copy
import json

from lab.containers import busybox_image
from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import partly, scenario

GNUPG = "GNUPGHOME=/root/.gnupg"
IMAGES = "/srv/images"
IDENTITY = "localhost/lab/busybox:latest"  # what the signatures claim the image is
SIGNER_KEY, OTHER_KEY = "/etc/containers/lab-signer.gpg", "/etc/containers/lab-other.gpg"
NO_SIGNATURE = "Source image rejected: A signature was required, but no signature exists"
INVALID = "Source image rejected: Invalid GPG signature: gpgme.Signature{Summary:"
# containers/image prints gpgme's verdict; its summary bits say why: 0x80 key missing, 0x4 bad signature
WRONG_KEY, BAD_SIGNATURE = f"{INVALID}128,", f"{INVALID}4,"
POLICY = {
    "default": [{"type": "reject"}],
    "transports": {"dir": {IMAGES: [{
        "type": "signedBy", "keyType": "GPGKeys", "keyPath": SIGNER_KEY,
        "signedIdentity": {"type": "exactReference", "dockerReference": IDENTITY}}]}},
}


@scenario(
    "image-trust",
    "A trust policy requiring a GPG signature on local images (container storage talk, \"Simple Image "
    "Signing\"): unsigned, other-key and tampered images refused, the signed one accepted",
    image="lab-atomic",
    memory=1024,
    tags=("containers", "catalog"),
    covers=(
        partly("image-signing", "podman's pulls only: docker 20.10 does not read policy.json"),
        partly("multiple-signers", "signatures kept beside `dir:` images; serving them from a web server needs a "
                                   "registry, which the lab has none of"),
    ),
    timeout=900,
)
def image_trust(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("two GPG keys made in the guest: the lab's signer and another"):
        signer, other = new_key(vm, "Lab Signer <signer@lab.invalid>"), new_key(vm, "Other <other@lab.invalid>")
        lab.record("keys", {"signer": signer, "other": other})
        vm.succeed(f"{GNUPG} gpg --export {signer} > {SIGNER_KEY} && {GNUPG} gpg --export {other} > {OTHER_KEY}")
        # Uncompressed signatures carry their payload in clear, so a tampered one is always the same bad one.
        vm.succeed("echo 'compress-algo none' >> /root/.gnupg/gpg.conf")

    with lab.step(f"images under {IMAGES}: unsigned, signed by the signer, by the other key, and tampered"):
        source = f"containers-storage:{busybox_image(vm, 'podman')}:latest"
        vm.succeed(f"mkdir -p {IMAGES} && skopeo copy -q {source} dir:{IMAGES}/unsigned")
        for name, key in (("signed", signer), ("other-key", other)):
            vm.succeed(f"{GNUPG} skopeo copy -q --sign-by {key} --sign-identity {IDENTITY} {source} "
                       f"dir:{IMAGES}/{name}")
        tampered = f"{IMAGES}/tampered/signature-1"
        vm.succeed(f"cp -r {IMAGES}/signed {IMAGES}/tampered && sed -i 's|lab/busybox|lab/busyboy|' {tampered} "
                   f"&& ! cmp -s {IMAGES}/signed/signature-1 {tampered}")
        vm.succeed(f"podman rmi {source.split(':', 1)[1]}")

    with lab.step("the policy: reject by default, dir: images under /srv/images need the signer's key"):
        vm.write_file("/etc/containers/policy.json", json.dumps(POLICY, indent=2))
        lab.evidence("policy.json", json.dumps(POLICY, indent=2))

    with lab.step("podman refuses the unsigned, other-key and tampered images, each with its own message"):
        refused = {}
        for name, message in (("unsigned", NO_SIGNATURE), ("other-key", WRONG_KEY),
                              ("tampered", BAD_SIGNATURE)):
            refused[name] = vm.fail(f"podman pull dir:{IMAGES}/{name}", message)
            lab.evidence(f"pull-{name}.txt", refused[name])
        assert other in refused["other-key"], "the refusal should name the key that signed"

    with lab.step("podman accepts the image signed by the signer and runs it"):
        image_id = vm.succeed(f"podman pull -q dir:{IMAGES}/signed").strip()
        assert vm.succeed(f"podman run --rm --network none {image_id} echo trusted").strip() == "trusted"
    _two_signers(lab, vm, other)


def _two_signers(lab: ScenarioContext, vm: Machine, other: str) -> None:
    with lab.step("a second signer signs the signed image; a policy requiring both refuses one, takes both"):
        vm.succeed(f"{GNUPG} skopeo copy -q --sign-by {other} --sign-identity {IDENTITY} dir:{IMAGES}/signed "
                   f"dir:{IMAGES}/both")
        signatures = vm.succeed(f"ls {IMAGES}/both").split()
        assert [name for name in signatures if name.startswith("signature-")] == ["signature-1", "signature-2"], \
            signatures
        both = copy.deepcopy(POLICY)
        first = both["transports"]["dir"][IMAGES][0]
        both["transports"]["dir"][IMAGES] = [first, {**first, "keyPath": OTHER_KEY}]
        vm.write_file("/etc/containers/policy.json", json.dumps(both, indent=2))
        lab.evidence("policy-both.json", json.dumps(both, indent=2))
        vm.succeed("podman rmi -a -f")
        lab.evidence("pull-one-signer.txt", vm.fail(f"podman pull dir:{IMAGES}/signed", WRONG_KEY))
        vm.succeed(f"podman pull -q dir:{IMAGES}/both")


def new_key(vm: Machine, uid: str) -> str:
    """A passphrase-less ed25519 signing key; its fingerprint."""
    vm.succeed(f"mkdir -p -m 0700 /root/.gnupg && {GNUPG} gpg --batch --passphrase '' --quick-gen-key '{uid}' "
               "ed25519 sign never")
    email = uid.split("<")[1].rstrip(">")
    listing = vm.succeed(f"{GNUPG} gpg --list-keys --with-colons {email}")
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

"""Building the two images from deploy/images with podman on a machine that reaches no image registry, so that the
Dockerfiles are built and the images run here (`make images-check`, in CI) and not only on a release machine.

The Dockerfiles' bases (python:3.11-slim, busybox:1.36-musl) are replaced, through their build arguments, by
stand-ins made on this machine from Debian's packages:

- Python: Debian bookworm (mmdebstrap, minbase) with its python3 (3.11) and pip, `python` and `pip` on the PATH as
  in the official image, pip allowed to install into the system (the official image's pip is not Debian's), and
  this machine's CA bundle (a proxy that inspects TLS may stand between pip and PyPI);
- busybox: Debian's busybox-static with a link per applet in /bin, as the official image has.

So what is checked is every step the Dockerfiles take and what the images do when run, not the official bases.
One platform per run: this machine's by default; a foreign one (`linux/arm64` on an amd64 machine) is built and
run under qemu-user-static registered with binfmt_misc, a few minutes more. `make images` builds both platforms
with buildx on the official bases.

podman runs with a containers.conf fitted to machines like this one: runc with cgroupfs (crun refuses the hybrid
cgroup layout these machines have) and modest default ulimits (a sandbox may refuse to raise them to podman's).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDIN_PREFIX = "localhost/wfboost-standin"
CHECK_PREFIX = "localhost/wfboost-check"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
# Run by mmdebstrap on the new root: what the official python image provides and Debian's lacks.
_PYTHON_CUSTOMIZE = (
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
    ' && ln -sf /usr/bin/python3 "$1"/usr/local/bin/python'
    ' && ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip'
    ' && cp /etc/ssl/certs/ca-certificates.crt "$1"/etc/ssl/certs/ca-certificates.crt'
)
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ImageError(RuntimeError):
    """A podman or mmdebstrap step failed; the message carries what it printed."""


@dataclass(frozen=True)
class Images:
    service: str
    replay: str
    platform: str  # linux/<arch>; `podman run --platform` picks the image of that architecture

    @property
    def run_flags(self) -> list[str]:
        return ["--platform", self.platform]


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def host_platform() -> str:
    return f"linux/{_ARCHES.get(platform.machine(), platform.machine())}"


def arch_of(target: str) -> str:
    """`linux/arm64` -> `arm64` (Debian's and the OCI name alike for the two platforms built)."""
    os_name, _, arch = target.partition("/")
    if os_name != "linux" or arch not in _ARCHES.values():
        raise ImageError(f"platform {target!r}: expected linux/amd64 or linux/arm64")
    return arch


def standin_tags(arch: str) -> tuple[str, str]:
    """The stand-ins' names for `arch`: for python:3.11-slim, then for busybox:1.36-musl."""
    return f"{STANDIN_PREFIX}/python:3.11-slim-{arch}", f"{STANDIN_PREFIX}/busybox:1.36-musl-{arch}"


def check_images(target: str, prefix: str = CHECK_PREFIX) -> Images:
    """The names a check builds for `target` under."""
    tag = f"{version()}-{arch_of(target)}"
    return Images(service=f"{prefix}/wfboost:{tag}", replay=f"{prefix}/replay:{tag}", platform=target)


def _conf_path() -> Path:
    path = Path(tempfile.gettempdir()) / "wfboost-containers.conf"
    if not path.exists() or path.read_text() != CONTAINERS_CONF:
        path.write_text(CONTAINERS_CONF)
    return path


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(_conf_path())}


def podman(*args: str, stdin: bytes | None = None, timeout: float = 900, check: bool = True) -> str:
    """Run podman; its stdout, or ImageError with what it printed."""
    if shutil.which("podman") is None:
        raise ImageError("podman is not installed (make images-check installs it)")
    done = subprocess.run(["podman", *args], input=stdin, capture_output=True, timeout=timeout,
                          env=podman_env(), check=False)
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-4000:]
        raise ImageError(f"podman {' '.join(args[:2])} failed ({done.returncode}): {tail}")
    return done.stdout.decode(errors="replace")


def mmdebstrap(arch: str, *options: str) -> bytes:
    """A Debian root for `arch` as a tar (a foreign one needs qemu-user-static registered with binfmt_misc)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed (make images-check installs it)")
    made = subprocess.run(["mmdebstrap", f"--architectures={arch}", "--quiet", *options, DEBIAN_SUITE, "-",
                           DEBIAN_MIRROR], capture_output=True, timeout=1800, check=False)
    if made.returncode != 0:
        raise ImageError(f"mmdebstrap failed ({made.returncode}): {made.stderr.decode(errors='replace')[-4000:]}")
    return made.stdout


def import_python_standin(arch: str) -> str:
    """Debian bookworm with python3 and pip for `arch`, imported as the stand-in for python:3.11-slim."""
    tag = standin_tags(arch)[0]
    root = mmdebstrap(arch, "--variant=minbase", "--include=python3,python3-pip,ca-certificates",
                      f"--customize-hook={_PYTHON_CUSTOMIZE}")
    podman("import", "--arch", arch, "--change", 'CMD ["python3"]', "-", tag, stdin=root)
    return tag


def busybox_root(busybox: bytes, applets: Iterable[str]) -> bytes:
    """A tar of / holding busybox, a link per applet in /bin, and /tmp: what the official image has."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        binary = tarfile.TarInfo("bin/busybox")
        binary.mode, binary.size = 0o755, len(busybox)
        tar.addfile(binary, io.BytesIO(busybox))
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def import_busybox_standin(arch: str) -> str:
    """Debian's busybox-static for `arch` with its applet links, imported as the stand-in for busybox:1.36-musl."""
    tag = standin_tags(arch)[1]
    with tarfile.open(fileobj=io.BytesIO(mmdebstrap(arch, "--variant=extract", "--include=busybox-static"))) as tar:
        member = tar.extractfile("./bin/busybox")
        if member is None:
            raise ImageError("busybox-static holds no /bin/busybox")
        busybox = member.read()
    with tempfile.TemporaryDirectory() as scratch:  # run once for its applet list (under qemu when foreign)
        binary = Path(scratch) / "busybox"
        binary.write_bytes(busybox)
        binary.chmod(0o755)
        listed = subprocess.run([str(binary), "--list"], capture_output=True, timeout=60, check=False)
    if listed.returncode != 0:
        raise ImageError(f"busybox --list failed for {arch} (foreign: is qemu-user-static registered?)")
    podman("import", "--arch", arch, "--change", 'CMD ["sh"]', "-", tag,
           stdin=busybox_root(busybox, listed.stdout.decode().split()))
    return tag


def build_images(target: str, python_image: str, busybox_image: str, prefix: str = CHECK_PREFIX) -> Images:
    """Both images from deploy/images for `target`, as `make images` builds them, on the given bases."""
    images = check_images(target, prefix)
    podman("build", "--platform", target, "--no-cache",
           "--build-arg", f"PYTHON_IMAGE={python_image}", "-f", str(ROOT / "deploy/images/Dockerfile"),
           "-t", images.service, str(ROOT), timeout=1800)
    podman("build", "--platform", target, "--no-cache", "--build-arg", f"BUSYBOX_IMAGE={busybox_image}",
           "-f", str(ROOT / "deploy/images/replay/Dockerfile"), "-t", images.replay,
           str(ROOT / "deploy/images/replay"))
    return images


def build_all(target: str | None = None, announce: Callable[[str], None] = print) -> Images:
    """Stand-in bases, then both images, for `target` (default: this machine's platform); each step announced."""
    target = target or host_platform()
    arch = arch_of(target)
    try:
        announce(f"[1/3] {target}: stand-in for python:3.11-slim, Debian {DEBIAN_SUITE} python3 (mmdebstrap)")
        python_image = import_python_standin(arch)
        announce(f"[2/3] {target}: stand-in for busybox:1.36-musl, Debian busybox-static")
        busybox_image = import_busybox_standin(arch)
        announce(f"[3/3] {target}: building deploy/images/Dockerfile and deploy/images/replay/Dockerfile (podman)")
        return build_images(target, python_image, busybox_image)
    except BaseException:
        remove(check_images(target))
        raise


def remove(images: Images) -> None:
    """Drop what a check built (both images and their stand-in bases) and the layers nothing uses any more: each
    run builds anew, and a CI machine would otherwise keep every run's half gigabyte. The prune takes every dangling
    image of the machine's podman storage, which on a CI machine are this check's."""
    podman("rmi", "--force", images.service, images.replay, *standin_tags(arch_of(images.platform)), check=False)
    podman("image", "prune", "--force", check=False)


def standin_manifests(targets: Sequence[str], announce: Callable[[str], None] = print) -> tuple[str, str]:
    """Stand-in bases for every platform in `targets`, each gathered in a manifest list under the stand-in name
    (python:3.11-slim, busybox:1.36-musl), which is what a multi-platform `make images` needs as its bases."""
    lists = (f"{STANDIN_PREFIX}/python:3.11-slim", f"{STANDIN_PREFIX}/busybox:1.36-musl")
    members: list[tuple[str, str]] = []
    for target in targets:
        arch = arch_of(target)
        announce(f"{target}: stand-ins for python:3.11-slim and busybox:1.36-musl")
        members += [(lists[0], import_python_standin(arch)), (lists[1], import_busybox_standin(arch))]
    for name in lists:
        podman("manifest", "rm", name, check=False)
        podman("manifest", "create", name)
    for name, image in members:
        podman("manifest", "add", name, f"containers-storage:{image}")
    return lists


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfboost_dev.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("platform", nargs="?", help="build both images for this platform (default: this machine's)")
    parser.add_argument("--standins", metavar="PLATFORMS",
                        help="only make the stand-in bases for these comma-separated platforms, as manifest lists, "
                             "and print the `make images IMAGE_BUILDER=podman` command that builds on them")
    args = parser.parse_args(argv)
    try:
        if args.standins:
            python_image, busybox_image = standin_manifests(args.standins.split(","))
            print(f"CONTAINERS_CONF={_conf_path()} make images IMAGE_BUILDER=podman IMAGE_PLATFORMS={args.standins} "
                  f"PYTHON_IMAGE={python_image} BUSYBOX_IMAGE={busybox_image} IMAGE_PREFIX=localhost/wfboost")
            return 0
        images = build_all(args.platform)
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(f"built {images.service} and {images.replay}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

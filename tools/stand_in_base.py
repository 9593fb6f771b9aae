"""Build a stand-in for the images' base, python:3.11-slim-bookworm, from Debian packages.

    python3 tools/stand_in_base.py [--tag chorus/python-base:3.11-bookworm] [--force]

Why: deploy/docker/Dockerfile starts every stage from BASE_IMAGE, python:3.11-slim-bookworm
by default, which only a container registry has. Where none is reachable (this project's
machines reach PyPI and Debian's mirrors, not Docker Hub), this bootstraps the same Debian
release with debootstrap, adds what the Dockerfile's stages run (``python`` and ``pip``
on PATH, ``groupadd``/``useradd``, apt for the vision image's libraries) and imports the
tree as an image: ``make images BASE_IMAGE=chorus/python-base:3.11-bookworm``.

It differs from the real base in two ways the Dockerfile sees. Python is Debian's
(``/usr/bin/python3.11``), which Debian marks externally managed, so the image sets
``PIP_BREAK_SYSTEM_PACKAGES=1`` where the real base (whose Python is not Debian's) needs
nothing of the kind; the Dockerfile only pip-installs into ``--target`` folders and uv's
virtual environments, never into the system Python, so the setting changes nothing else.
And it trusts the CA certificates this machine added to its own store (a TLS-inspecting
egress proxy's, here), with ``SSL_CERT_FILE`` pointing uv at that store: without them the
builds could not reach PyPI. The stand-in is for building and testing here, never to ship.

Needs root, ``debootstrap`` and a Docker engine; an image already under the tag is kept
unless ``--force``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

TAG = "chorus/python-base:3.11-bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
HOST_AUTHORITIES = Path("/usr/local/share/ca-certificates")
"""Where Debian keeps the CA certificates a machine adds to its trust store."""

PACKAGES = (
    "python3.11",
    "python3-pip",
    "python3-venv",
    # /usr/bin/python -> python3: the Dockerfile runs `python ...`.
    "python-is-python3",
    # groupadd and useradd, for the images' chorus user (minbase leaves them out).
    "passwd",
    # HTTPS to PyPI for pip, and for apt sources a later stage may add.
    "ca-certificates",
)
"""What debootstrap adds to bookworm's minimal base (essential packages and apt)."""

IMAGE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    # Debian's Python is externally managed (PEP 668); see the module docstring.
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
    # uv checks PyPI's certificate against its own bundled roots unless told of a file: the
    # system's, which holds the CAs trust_host_authorities added.
    "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    'CMD ["python3"]',
)
"""The image configuration `docker import` writes (a tarball carries none of its own)."""


def image_exists(docker: str, tag: str) -> bool:
    """Whether the Docker engine has an image tagged ``tag``."""
    found = subprocess.run(
        [docker, "image", "inspect", tag], capture_output=True, check=False, timeout=60
    )
    return found.returncode == 0


def bootstrap(rootfs: Path, mirror: str) -> None:
    """Install bookworm's minimal base and PACKAGES into ``rootfs`` from ``mirror``."""
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            mirror,
        ],
        check=True,
    )


def slim(rootfs: Path, mirror: str) -> None:
    """Leave the tree as the slim images are: apt sources with security updates (the vision
    image's `apt-get update` then gets today's packages), no package lists or downloads."""
    (rootfs / "etc" / "apt" / "sources.list").write_text(
        f"deb {mirror} {SUITE} main\n"
        f"deb {mirror} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
    )
    for folder in ("var/lib/apt/lists", "var/cache/apt", "var/log"):
        for entry in (rootfs / folder).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    # Nothing may be missing in one stage and there in another: check what the Dockerfile runs.
    for command in ("usr/bin/python", "usr/bin/pip", "usr/sbin/groupadd", "usr/sbin/useradd"):
        if not (rootfs / command).exists():
            raise RuntimeError(f"the stand-in base lacks /{command}")


def trust_host_authorities(rootfs: Path) -> None:
    """Add the CA certificates this machine added to its own trust store to the tree's.

    Where egress passes a TLS-inspecting proxy (as on this project's machines), its CA is
    one of them, and without it pip and uv in the build could not reach PyPI. Only public
    certificates are copied; a machine that added none gets Debian's store as it is.
    """
    added = sorted(HOST_AUTHORITIES.rglob("*.crt")) if HOST_AUTHORITIES.is_dir() else []
    if not added:
        return
    target = rootfs / HOST_AUTHORITIES.relative_to("/")
    for certificate in added:
        destination = target / certificate.relative_to(HOST_AUTHORITIES)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(certificate, destination)
    subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True)


def import_image(docker: str, rootfs: Path, tag: str) -> None:
    """``tar -C rootfs -c . | docker import`` with IMAGE_CONFIG, tagged ``tag``."""
    changes = [word for line in IMAGE_CONFIG for word in ("--change", line)]
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        subprocess.run([docker, "import", *changes, "-", tag], stdin=tar.stdout, check=True)
    if tar.returncode != 0:
        raise subprocess.CalledProcessError(tar.returncode, tar.args)


def build(tag: str = TAG, docker: str = "docker", mirror: str = MIRROR) -> None:
    """Bootstrap the tree in a temporary folder and import it as ``tag``."""
    with tempfile.TemporaryDirectory(prefix="chorus-base-", dir="/var/tmp") as folder:
        rootfs = Path(folder) / "rootfs"
        bootstrap(rootfs, mirror)
        trust_host_authorities(rootfs)
        slim(rootfs, mirror)
        import_image(docker, rootfs, tag)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the stand-in base unless it is there already; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tag", default=TAG, help=f"the image's tag (default {TAG})")
    parser.add_argument("--docker", default="docker", help="the Docker command line")
    parser.add_argument("--mirror", default=MIRROR, help="Debian mirror debootstrap installs from")
    parser.add_argument("--force", action="store_true", help="rebuild an image already there")
    args = parser.parse_args(argv)
    if not args.force and image_exists(args.docker, args.tag):
        print(f"{args.tag}: already built (--force rebuilds it)")
        return 0
    if shutil.which("debootstrap") is None:
        print("debootstrap is needed: apt-get install debootstrap", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("debootstrap and chroot need root: run it with sudo", file=sys.stderr)
        return 1
    try:
        build(args.tag, args.docker, args.mirror)
    except subprocess.CalledProcessError as error:
        print(f"{args.tag}: not built, {error}", file=sys.stderr)
        return 1
    print(f"{args.tag}: built")
    return 0


if __name__ == "__main__":
    sys.exit(main())

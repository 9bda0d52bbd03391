"""Builds the task image (kubeflow/Dockerfile) under a tag derived from its content.

    python kubeflow/build_image.py [--repository resnet-ablation] [--base-image IMAGE]
                                   [--cuda 0|1] [--push]

The tag is a hash of everything that decides the image: the files of the build context (the
repository minus what ``.dockerignore`` leaves out), the base image's id and the build
arguments, e.g. ``resnet-ablation:5c0f3a9e1d2b-cpu``. An image with that tag already present is
reused instead of rebuilt, so repeated runs (and CI on the same daemon) build once per content
change; a new build gets a new tag, which is what KFP's caching needs (it keys on the image
string, not the digest: kubeflow/pipelines#13862). The image reference is printed last, alone
on its line, for scripts: ``IMAGE=$(python kubeflow/build_image.py ... | tail -n 1)``.

Builds run ``docker build --network host`` (the build installs from PyPI) with the classic
builder or BuildKit, whichever the daemon uses. Standard library only: runs with any Python 3.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = "kubeflow/Dockerfile"
DEFAULT_BASE = "python:3.11-slim-bookworm"


def _ignore_patterns() -> list[str]:
    path = REPO / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip().rstrip("/") for line in lines
            if line.strip() and not line.lstrip().startswith(("#", "!"))]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `relative` (or a folder above it) out of the context.

    Handles the forms this repository uses (``name``, ``*.ext``, ``**/name``); a pattern it
    misreads can only add files to the hash, so the worst case is an unneeded rebuild."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def context_files() -> list[str]:
    """The build context's files, relative to the repository root, sorted."""
    patterns = _ignore_patterns()
    files = []
    for directory, dirs, names in os.walk(REPO):
        base = pathlib.Path(directory).relative_to(REPO).as_posix()
        base = "" if base == "." else base + "/"
        dirs[:] = sorted(d for d in dirs if not _ignored(base + d, patterns))
        files += [base + name for name in names if not _ignored(base + name, patterns)]
    return sorted(files)


def content_hash(base_image_id: str, build_args: dict[str, str]) -> str:
    """sha256 over the context's paths, modes and contents, the base image id and build args."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"base": base_image_id, "args": build_args}, sort_keys=True).encode())
    for relative in context_files():
        path = REPO / relative
        digest.update(f"\0{relative}\0{os.stat(path).st_mode & 0o111:o}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def image_id(reference: str) -> str | None:
    result = _docker("image", "inspect", "-f", "{{.Id}}", reference, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def image_size(reference: str) -> int:
    return int(_docker("image", "inspect", "-f", "{{.Size}}", reference).stdout.strip())


def build(repository: str, base_image: str, cuda: bool, push: bool = False) -> str:
    """Builds (or reuses) the image; returns its reference REPOSITORY:HASH[-cpu]."""
    base_id = image_id(base_image)
    if base_id is None:
        pull = _docker("pull", base_image, check=False)
        base_id = image_id(base_image)
        if base_id is None:
            raise SystemExit(f"build_image: base image {base_image} is not present and could "
                             f"not be pulled ({pull.stderr.strip()[-300:]}); without a registry "
                             f"make one with kubeflow/make_base_image.sh")
    build_args = {"BASE_IMAGE": base_image, "CUDA": "1" if cuda else "0"}
    tag = content_hash(base_id, build_args)[:12] + ("" if cuda else "-cpu")
    reference = f"{repository}:{tag}"
    if image_id(reference):
        print(f"build_image: {reference} exists (same content): reused, "
              f"{image_size(reference) / 1e9:.2f} GB", file=sys.stderr)
    else:
        print(f"build_image: building {reference} from {base_image} (CUDA={build_args['CUDA']})",
              file=sys.stderr, flush=True)
        start = time.monotonic()
        command = ["docker", "build", "--network", "host", "-f", DOCKERFILE, "-t", reference,
                   "--label", f"org.opencontainers.image.version={tag}"]
        for key, value in build_args.items():
            command += ["--build-arg", f"{key}={value}"]
        result = subprocess.run([*command, "."], cwd=REPO, stdout=sys.stderr, stderr=sys.stderr)
        if result.returncode:
            raise SystemExit(f"build_image: docker build failed ({result.returncode})")
        print(f"build_image: built {reference} in {time.monotonic() - start:.0f} s, "
              f"{image_size(reference) / 1e9:.2f} GB", file=sys.stderr)
    if push:
        subprocess.run(["docker", "push", reference], check=True, stdout=sys.stderr)
    return reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubeflow/build_image.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", default="resnet-ablation",
                        help="image name without tag, e.g. REGISTRY/resnet-ablation")
    parser.add_argument("--base-image", default=DEFAULT_BASE,
                        help=f"BASE_IMAGE build argument (default {DEFAULT_BASE})")
    parser.add_argument("--cuda", type=int, choices=(0, 1), default=1,
                        help="1: TensorFlow's CUDA wheels (default); 0: CPU-only image")
    parser.add_argument("--push", action="store_true", help="docker push the image afterwards")
    args = parser.parse_args(argv)
    print(build(args.repository, args.base_image, bool(args.cuda), args.push))
    return 0


if __name__ == "__main__":
    sys.exit(main())

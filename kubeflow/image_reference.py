"""The container image a compiled pipeline's tasks run in: refused before compiling when it is
no Docker image reference (a registry and the tasks would fail to pull it) or carries no tag
per build (KFP caches task results by the image string)."""

from __future__ import annotations

import re

from pipeline import config as config_lib

# A Docker image reference (the grammar of github.com/distribution/reference):
# [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], PATH of lowercase components joined by "/".
_HOST_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?:(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")
IMAGE_NAME_MAX = 255  # characters before the tag and digest, as Docker allows


def check_image(image: str | None, allow_latest_tag: bool = False) -> list[str]:
    """Refuses (ConfigError) no image, one that is no valid Docker image reference
    (``IMAGE_REFERENCE``: a registry and tasks would fail to pull it) and one without a tag
    or digest or tagged ``latest``, unless `allow_latest_tag`; then returns a warning
    instead."""
    if image is None:
        raise config_lib.ConfigError(
            "image must name the container image the tasks run in, with a tag per build, e.g. "
            "--image REGISTRY/resnet-ablation:TAG (kubeflow/build_image.py prints one)")
    check_image_reference(image)
    name = image.rsplit("/", 1)[-1]
    if "@" in name or (":" in name and not name.endswith(":latest")):
        return []
    problem = (f"image {image} has {'the tag latest' if ':' in name else 'no tag'}: KFP caches "
               f"task results by the image string, so a rebuilt image under the same tag reuses "
               f"results of the old one (kubeflow/pipelines#13862); tag every build")
    if not allow_latest_tag:
        raise config_lib.ConfigError(problem + " or pass --allow-latest-tag")
    return [problem]


def check_image_reference(image: str) -> None:
    """Refuses (ConfigError) `image` unless it is a Docker image reference:
    [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], PATH lowercase letters and digits in components
    joined by "/" and separated within by ".", "_", "__" or dashes, TAG up to 128 letters,
    digits, "_", "." and "-" not starting with "." or "-", DIGEST 64 lowercase hex digits."""
    name = re.split(r"[:@](?=[^/]*$)", image, maxsplit=1)[0]
    if IMAGE_REFERENCE.fullmatch(image) and len(name) <= IMAGE_NAME_MAX:
        return
    raise config_lib.ConfigError(
        f"image {image!r} is not a valid image reference: expected "
        f"[REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], NAME in lowercase letters, digits and "
        f"'.', '_' or '-' between them, TAG of up to 128 letters, digits, '_', '.' or '-', e.g. "
        f"--image REGISTRY/resnet-ablation:TAG (kubeflow/build_image.py prints one)")

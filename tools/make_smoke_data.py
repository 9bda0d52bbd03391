"""Regenerates data/cifar10_smoke from the full CIFAR-10 PNG export (see data/README.md)."""

import pathlib
import shutil
import sys

PER_CLASS = {"train": 200, "test": 50}


def main(source: str = "../shared/datasets/cifar10/png", target: str = "data/cifar10_smoke") -> int:
    src, dst = pathlib.Path(source), pathlib.Path(target)
    for split, count in PER_CLASS.items():
        for class_dir in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            (dst / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            for file in sorted(class_dir.iterdir(), key=lambda p: p.name)[:count]:
                shutil.copy2(file, dst / split / class_dir.name / file.name)
    print(f"wrote {sum(1 for _ in dst.rglob('*.png'))} PNGs under {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

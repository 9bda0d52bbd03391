"""What ImageExampleGen's input fingerprint costs on an image folder, against content digests.

Lists the folder as the driver does (``data_source.list_imagefolder``), takes its stat
fingerprint (``data_source.folder_fingerprint``: ids, labels, sizes, modification times) and,
for comparison, a SHA-256 of every file's content; prints the seconds of each, `--rounds`
times (the first round reads the files from disk, later ones from the page cache).

    .venv/bin/python benchmarks/fingerprint_cost.py ../shared/datasets/cifar10/png
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

from resnet_ablation import data_source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for round_ in range(args.rounds):
        started = time.perf_counter()
        folder = data_source.list_imagefolder(args.folder)
        listed = time.perf_counter()
        data_source.folder_fingerprint(folder)
        fingerprinted = time.perf_counter()
        digest = hashlib.sha256()
        for file in folder.files:
            with open(file.path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
        digested = time.perf_counter()
        print(f"round {round_ + 1}: {len(folder.files)} files; listing {listed - started:.2f} s, "
              f"stat fingerprint {fingerprinted - listed:.2f} s, content digests "
              f"{digested - fingerprinted:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

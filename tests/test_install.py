"""The installed TFX 1.21 stack works on this host, and the glibc compat step is in place."""

import pathlib
import platform
import subprocess
import sys
import sysconfig

import pytest

from components import install_check

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import glibc_compat  # noqa: E402

SITE = pathlib.Path(sysconfig.get_paths()["purelib"])


def test_stack_imports_mlmd_opens_and_tfdv_validates(tmp_path):
    result = install_check.verify_stack(tmp_path)
    assert result["tfx"] == "1.21.0"
    assert result["mlmd_artifact_type_id"] > 0
    assert result["schema_features"] == ["label", "name"]
    assert result["anomalies"] == 0
    assert (tmp_path / "mlmd.sqlite").stat().st_size > 0


@pytest.mark.skipif(glibc_compat.glibc_version() >= glibc_compat.REQUIRED_GLIBC,
                    reason="the compat step only patches hosts with glibc < 2.39")
def test_compat_step_patched_both_extensions_and_is_idempotent():
    for extension in glibc_compat.EXTENSIONS:
        path = SITE / extension
        assert (path.parent / glibc_compat.SHIM_NAME).is_file()
        assert glibc_compat.SHIM_NAME in glibc_compat._patchelf("--print-needed", str(path)).split()
        assert glibc_compat._patchelf("--print-rpath", str(path)).strip() == "$ORIGIN"
        assert glibc_compat.mark_versions_weak(path) == 0  # already weak: nothing left to change
    before = {ext: (SITE / ext).read_bytes() for ext in glibc_compat.EXTENSIONS}
    run = subprocess.run([sys.executable, str(REPO / "tools/glibc_compat.py"), str(SITE)],
                         capture_output=True, text=True, check=True)
    assert "already patched" in run.stdout and len(run.stdout.strip().splitlines()) == 1
    assert before == {ext: (SITE / ext).read_bytes() for ext in glibc_compat.EXTENSIONS}


def test_compat_step_reports_libc():
    name, _ = platform.libc_ver()
    assert name == "glibc"
    assert glibc_compat.glibc_version() >= (2, 31)

"""The wheel is pure Python: built with no compiler, tagged py3-none-any, cffi its one dependency.

The wheel is built once per module (a few seconds) with
``pip wheel --no-deps --no-build-isolation --no-index`` and CC/CXX/LDSHARED
set to /bin/false, so any attempt to compile fails the build.  pip builds
setuptools projects in the source tree (``build/``, ``*.egg-info``), so the
build runs on a copy of the repository in a temporary directory: the
working tree stays untouched, and a stale ``build/lib`` left there cannot
leak into the wheel under test.
"""

from __future__ import annotations

import email.message
import email.parser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BUILD_TIMEOUT = 120  # seconds; a normal build takes a few


def _version_tuple(version: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def missing_build_tools() -> Optional[str]:
    """Why this interpreter cannot build the wheel without build isolation, or None."""
    if importlib.util.find_spec("pip") is None:
        return f"pip is not installed for {sys.executable}"
    if importlib.util.find_spec("setuptools") is None:
        return f"setuptools is not installed for {sys.executable} (needed by --no-build-isolation)"
    from importlib import metadata

    version = metadata.version("setuptools")
    if _version_tuple(version) < (61, 0):
        return f"setuptools {version} is older than the 61 pyproject.toml requires"
    # setuptools < 70.1 delegates bdist_wheel to the separate `wheel` package.
    if _version_tuple(version) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {version} needs the `wheel` package to build wheels and it is not installed for {sys.executable}"
    return None


# Build output, caches and virtualenvs anywhere in the tree.
_IGNORED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", ".venv*", "__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache"
)
# Top-level directories the package build does not read (they may be large
# or changing while other runs use them).
_NOT_BUILD_INPUT = {"tests", "bench", "examples", ".ci"}


def _copy_source(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    skipped = set(_IGNORED(str(REPO_ROOT), [p.name for p in REPO_ROOT.iterdir()])) | _NOT_BUILD_INPUT
    for entry in REPO_ROOT.iterdir():
        if entry.name in skipped:
            continue
        if entry.is_dir():
            shutil.copytree(entry, src / entry.name, ignore=_IGNORED)
        else:
            shutil.copy2(entry, src / entry.name)
    assert (src / "pyproject.toml").is_file() and (src / "tuntap_cffi" / "_libc.py").is_file()
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing_build_tools()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true, so the packaging test cannot be skipped: {reason}")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(tmp)
    out = tmp / "dist"
    env = dict(os.environ, CC="/bin/false", CXX="/bin/false", LDSHARED="/bin/false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [
        sys.executable, "-m", "pip", "wheel",
        "--no-deps", "--no-build-isolation", "--no-index",
        "-w", str(out), str(src),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} (CC=CXX=LDSHARED=/bin/false) failed with {proc.returncode}:\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {[w.name for w in wheels]}"
    return wheels[0]


def _names(wheel: Path) -> List[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (path,) = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        return email.parser.Parser().parsestr(zf.read(path).decode("utf-8"))


def test_wheel_is_pure_python(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    assert wheel.name.startswith("tuntap_cffi-"), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        (path,) = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/WHEEL", n)]
        wheel_meta = email.parser.Parser().parsestr(zf.read(path).decode("utf-8"))
    assert wheel_meta["Root-Is-Purelib"].strip().lower() == "true"
    assert wheel_meta.get_all("Tag") == ["py3-none-any"]


def test_wheel_contents(wheel: Path) -> None:
    names = _names(wheel)
    assert "tuntap_cffi/_libc.py" in names
    assert "tuntap_cffi/py.typed" in names
    compiled = [n for n in names if n.endswith((".so", ".c", ".pyd", ".o", ".dll", ".dylib"))]
    assert compiled == [], f"compiled files in the wheel: {compiled}"
    # Every module of the source package and its subpackages (_darwin/) ships; the build script and tests do not.
    modules = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "tuntap_cffi").rglob("*.py"))
    assert [m for m in modules if m not in names] == []
    assert [n for n in names if n == "build_ffi.py" or n.startswith("tests/")] == []


def test_wheel_libc_is_the_committed_one(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read("tuntap_cffi/_libc.py")
    assert shipped == (REPO_ROOT / "tuntap_cffi" / "_libc.py").read_bytes()


def test_cffi_is_the_only_runtime_requirement(wheel: Path) -> None:
    requires = _metadata(wheel).get_all("Requires-Dist") or []
    runtime = [r for r in requires if not re.search(r"""\bextra\s*==""", r)]
    names = [re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r).group(1).lower() for r in runtime]  # type: ignore[union-attr]
    assert names == ["cffi"], f"runtime Requires-Dist: {runtime}"


def test_wheel_version_matches_package(wheel: Path) -> None:
    import tuntap_cffi

    meta = _metadata(wheel)
    assert meta["Name"].replace("_", "-").lower() == "tuntap-cffi"
    assert meta["Version"] == tuntap_cffi.__version__

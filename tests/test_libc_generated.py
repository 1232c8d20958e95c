"""``tuntap_cffi/_libc.py`` is exactly what ``build_ffi.py`` generates, and stays pure Python.

The build script is imported from the repository root (never through the
package: the package must not import it, see build_ffi.py's docstring).
"""

from __future__ import annotations

import ast
import difflib
import subprocess
import sys
from pathlib import Path
from typing import List

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "tuntap_cffi"
LIBC = PACKAGE / "_libc.py"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import build_ffi  # noqa: E402


def _package_sources() -> List[Path]:
    sources = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    assert LIBC in sources and PACKAGE / "__init__.py" in sources
    return sources


def test_generated_module_is_up_to_date() -> None:
    expected = build_ffi.generate()
    actual = LIBC.read_text()
    if actual != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    actual.splitlines(True),
                    expected.splitlines(True),
                    "tuntap_cffi/_libc.py (committed)",
                    "build_ffi.generate()",
                )
            )[:60]
        )
        raise AssertionError(
            "tuntap_cffi/_libc.py is out of date with build_ffi.py: run `python build_ffi.py` "
            f"and commit the result.\n{diff}"
        )


def test_build_script_targets_the_package_module() -> None:
    assert build_ffi.OUTPUT == LIBC
    assert build_ffi.MODULE == "tuntap_cffi._libc"
    assert LIBC.read_text().startswith(build_ffi.HEADER)


def test_build_script_uses_out_of_line_abi_mode() -> None:
    # set_source(module, None): cffi records the source as None and emits a
    # Python module instead of C; any C source here would need a compiler.
    module_name, source = build_ffi.make_ffi()._assigned_source[:2]
    assert module_name == "tuntap_cffi._libc"
    assert source is None, "build_ffi.make_ffi() must call set_source(MODULE, None) (ABI mode)"


def test_libc_module_is_pure_python() -> None:
    tree = ast.parse(LIBC.read_text(), str(LIBC))
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append("." * node.level + (node.module or ""))
    assert imported == ["_cffi_backend"], f"_libc.py imports {imported}; ABI mode needs only _cffi_backend"
    assigned = [
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    ]
    assert assigned == ["ffi"]

    import _cffi_backend

    from tuntap_cffi._libc import ffi

    assert isinstance(ffi, _cffi_backend.FFI)


def test_package_holds_no_compiled_artefact() -> None:
    artefacts = sorted(
        str(p.relative_to(REPO_ROOT))
        for p in PACKAGE.rglob("*")
        if p.suffix in (".so", ".c", ".o", ".pyd", ".dll", ".dylib") and "__pycache__" not in p.parts
    )
    assert artefacts == [], f"compiled cffi artefacts in the package: {artefacts}"


def test_package_sources_never_import_build_ffi() -> None:
    offenders = []
    for path in _package_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Constant) and node.value == "build_ffi":
                names = ["build_ffi"]  # importlib.import_module("build_ffi") and the like
            if any(n.split(".")[-1] == "build_ffi" for n in names):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', '?')}")
    assert offenders == [], f"the package refers to the build script: {offenders}"


def test_importing_the_package_does_not_load_build_ffi() -> None:
    # Run from the repo root, where build_ffi *could* be imported by accident.
    code = (
        "import importlib, pkgutil, sys\n"
        "import tuntap_cffi\n"
        "for m in pkgutil.walk_packages(tuntap_cffi.__path__, 'tuntap_cffi.'):\n"
        "    importlib.import_module(m.name)\n"
        "import os\nassert os.path.realpath(tuntap_cffi.__file__).startswith(sys.argv[1]), tuntap_cffi.__file__\n"
        "print(sorted(n for n in sys.modules if n.startswith('tuntap_cffi')))\n"
        "print('build_ffi' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(PACKAGE)],
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    modules, loaded = proc.stdout.splitlines()
    assert "tuntap_cffi._libc" in modules
    assert loaded == "False", f"importing the package imported build_ffi; modules: {modules}"

"""One version, written once: tuntap_cffi.__version__ is the installed distribution's and the CHANGELOG's newest.

pyproject.toml takes the version from ``tuntap_cffi/__init__.py`` (setuptools'
dynamic ``attr``, read without importing); tests/test_packaging.py checks that the
wheel built from this tree carries it (test_wheel_version_matches_package).
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

import tuntap_cffi
from conftest import IN_CI

REPO = Path(__file__).resolve().parent.parent
SEMVER = re.compile(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?")


def test_version_is_a_release_number() -> None:
    assert SEMVER.fullmatch(tuntap_cffi.__version__), tuntap_cffi.__version__


def test_installed_distribution_has_this_version() -> None:
    """importlib.metadata's version of tuntap-cffi (what pip installed) is tuntap_cffi.__version__."""
    try:
        installed = version("tuntap-cffi")
    except PackageNotFoundError:
        if IN_CI:
            pytest.fail(f"CI=true and tuntap-cffi is not installed for {sys.executable} (tests/run.sh installs '.[test]')")
        pytest.skip(f"tuntap-cffi is not installed for {sys.executable}")
    assert installed == tuntap_cffi.__version__, (
        f"installed tuntap-cffi {installed}, source {tuntap_cffi.__version__}: reinstall (pip install '.[test]')")


def test_pyproject_reads_the_version_from_the_package() -> None:
    """No second copy: pyproject.toml declares the version dynamic and points at tuntap_cffi.__version__."""
    text = (REPO / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic = \[[^]]*"version"', project, re.M), project
    assert not re.search(r"^version\s*=", project, re.M), "a static version in [project]"
    assert re.search(r'^\[tool\.setuptools\.dynamic\]\nversion = \{ attr = "tuntap_cffi\.__version__" \}$', text, re.M)


def test_changelog_newest_section_is_this_version() -> None:
    """CHANGELOG.md's first release heading names __version__ (with a date, or "unreleased")."""
    headings = re.findall(r"^## (\S+)(.*)$", (REPO / "CHANGELOG.md").read_text(), re.M)
    releases = [(v, rest) for v, rest in headings if SEMVER.fullmatch(v)]
    assert releases, f"no release section in CHANGELOG.md: {headings}"
    newest, rest = releases[0]
    assert newest == tuntap_cffi.__version__, f"CHANGELOG's newest section is {newest}, __version__ {tuntap_cffi.__version__}"
    assert re.fullmatch(r" \((unreleased|\d{4}-\d\d-\d\d)\)", rest), rest

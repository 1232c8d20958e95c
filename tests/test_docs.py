"""The documentation site (docs/) as CI checks it: it builds cleanly, its links hold, its reference is complete.

The site is built once per run, on CPython, with warnings as errors and
nitpicky references (``sphinx -W -n --keep-going``), into a scratch
directory.  Then, from the built output only (no network):

- every relative link of every page reaches a file that exists, and its
  ``#anchor`` an element of that file with that id;
- every public name (the ``__all__`` of the package and of each public
  module) is in the reference, read from the built ``objects.inv``: as
  ``module.name``, or as another public module's documented name for the
  same object (a re-export is documented once, at its home).

The guides' code examples run as tests in tests/test_readme.py, beside the README's.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import platform
import posixpath
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterable, List, Optional, Set, Tuple
from urllib.parse import unquote, urlsplit

import pytest

import tuntap_cffi

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"

pytestmark = pytest.mark.skipif(
    platform.python_implementation() != "CPython", reason="the site is built once, on CPython (the docs extra)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site's directory (the build must succeed with no warning)."""
    try:
        import sphinx  # noqa: F401  (only to know it is there)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("Sphinx is not installed: pip install '.[docs]' (tests/run.sh does)")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, f"the site does not build cleanly:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_the_site_builds_with_warnings_as_errors(site: Path) -> None:
    assert (site / "index.html").is_file() and (site / "objects.inv").is_file()


# ---------------------------------------------------------------- internal links

class _Page(HTMLParser):
    """The ids a page defines and the links it makes (href of a/link, src of img/script)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: Set[str] = set()
        self.links: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key == "id" or (key == "name" and tag == "a"):
                self.ids.add(value)
            elif (key == "href" and tag in ("a", "link")) or (key == "src" and tag in ("img", "script")):
                self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def broken_links(root: Path) -> List[str]:
    """Every relative link under *root*'s HTML pages whose file or #anchor does not exist, as 'page: link'."""
    pages: Dict[Path, _Page] = {path: _parse(path) for path in sorted(root.rglob("*.html"))}
    broken: List[str] = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("/"):
                continue  # external: not checked (no network)
            target = path if not parts.path else Path(posixpath.normpath(path.parent / unquote(parts.path)))
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(root)}: {link}"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no such anchor)")
    return broken


def test_every_internal_link_resolves(site: Path) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10, pages  # the reference and guides are there
    broken = broken_links(site)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    """The checker itself: a good link passes, a link to a missing page or anchor is reported."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text(
        '<p id="top"><a href="sub/b.html#here">ok</a> <a href="#top">self</a> <a href="https://example.org/x">out</a>'
        '<a href="sub/b.html#gone">anchor</a> <a href="c.html">file</a></p>'
    )
    (tmp_path / "sub" / "b.html").write_text('<h1 id="here">b</h1><a href="../a.html#top">back</a>')
    assert broken_links(tmp_path) == ["a.html: sub/b.html#gone (no such anchor)", "a.html: c.html (no such file)"]


# ---------------------------------------------------------------- the reference is complete

def public_modules() -> List[ModuleType]:
    """The package and each of its modules without a leading underscore."""
    names = [info.name for info in pkgutil.iter_modules(tuntap_cffi.__path__) if not info.name.startswith("_")]
    return [tuntap_cffi] + [importlib.import_module(f"tuntap_cffi.{name}") for name in sorted(names)]


def documented_names(site: Path) -> Set[str]:
    """The full names of the Python objects the built reference documents."""
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    return {name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries}


def missing_from_reference(modules: Iterable[ModuleType], documented: Set[str]) -> List[str]:
    """Each public name of *modules* that the reference does not document (at home or re-exported)."""
    by_module = {module.__name__: module for module in modules}
    # leaf name -> the objects documented under that name at module level
    at_home: Dict[str, List[object]] = {}
    for full in documented:
        parent, _, leaf = full.rpartition(".")
        if parent in by_module and hasattr(by_module[parent], leaf):
            at_home.setdefault(leaf, []).append(getattr(by_module[parent], leaf))
    missing: List[str] = []
    for module in by_module.values():
        for name in module.__all__:
            obj = getattr(module, name)
            if f"{module.__name__}.{name}" in documented or any(obj is other for other in at_home.get(name, [])):
                continue
            missing.append(f"{module.__name__}.{name}")
    return missing


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    modules = public_modules()
    assert {m.__name__ for m in modules} >= {"tuntap_cffi", "tuntap_cffi.device", "tuntap_cffi.pytun_compat"}
    missing = missing_from_reference(modules, documented_names(site))
    assert not missing, f"public names missing from the API reference (docs/reference/): {missing}"


def test_the_reference_check_names_what_is_missing() -> None:
    """The checker itself: a re-export counts through its home, a name documented nowhere is named."""
    from tuntap_cffi import device, errors

    documented = {f"tuntap_cffi.device.{n}" for n in device.__all__} | {"tuntap_cffi.device.open_queues"}
    missing = missing_from_reference([tuntap_cffi, device], documented)
    assert "tuntap_cffi.open_queues" not in missing and "tuntap_cffi.Device" not in missing
    assert "tuntap_cffi.TunTapError" in missing and "tuntap_cffi.device.Device" not in missing
    documented |= {f"tuntap_cffi.errors.{n}" for n in errors.__all__}
    assert missing_from_reference([tuntap_cffi, device, errors], documented) == [
        "tuntap_cffi.delete_persistent", "tuntap_cffi.PacketRing", "tuntap_cffi.compile_filter",
    ]


# ---------------------------------------------------------------- the README's links into the site

def _slug(heading: str) -> str:
    """A heading's anchor as forges (and MyST's heading anchors) make it: lower case, punctuation dropped, - for spaces."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def broken_markdown_links(page: Path) -> List[str]:
    """Each relative link of Markdown *page* to a missing file, or to a missing heading of the page itself."""
    text = page.read_text()
    headings = {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.M)}
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue
        if not parts.path:
            if parts.fragment not in headings:
                broken.append(f"{target} (no such heading)")
        elif not (page.parent / parts.path).exists():
            broken.append(f"{target} (no such file)")
    return broken


def test_the_readme_links_into_the_site() -> None:
    """The README (the front door, not part of the site) links to guides and headings that exist."""
    readme = REPO / "README.md"
    assert "docs/guides/getting-started.md" in readme.read_text()
    assert not broken_markdown_links(readme)


def test_the_markdown_link_checker_finds_a_missing_file_and_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n## The `dump` command\n\n[a](#a-title) [b](#the-dump-command) [c](#gone) "
                    "[d](page.md) [e](missing.md) [f](https://example.org/x)\n")
    assert broken_markdown_links(page) == ["#gone (no such heading)", "missing.md (no such file)"]

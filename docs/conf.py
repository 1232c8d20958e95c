"""Sphinx configuration of the tuntap_cffi site: guides in Markdown (MyST), the reference from the docstrings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode

# The site documents this checkout's package, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tuntap_cffi  # noqa: E402  (after the path change above)

project = "tuntap_cffi"
author = "the tuntap_cffi authors"
copyright = "the tuntap_cffi authors"
release = tuntap_cffi.__version__
version = release

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# ```python fences stay plain code blocks (the README's style); {py:func} roles still work.
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # "#set-up" style anchors for the headings the guides link to

html_theme = "furo"
html_title = "tuntap_cffi"

# Signatures from the type hints, shown in the description so long signatures stay readable.
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_preserve_defaults = True

# Signatures come from the code: a docstring's first line is prose (pytun_compat's mimics python-pytun's).
autodoc_docstring_signature = False

nitpicky = True
# Names with no page to link to (the build runs offline, so no intersphinx): the standard library,
# typeshed's buffer aliases, and private helpers that show up as base classes or in type hints.
nitpick_ignore_regex: List[Tuple[str, str]] = [
    ("py:class", r"(ipaddress|enum|os|argparse|asyncio|socket|typing|collections\.abc)\..+"),
    ("py:class", r"(ReadableBuffer|WriteableBuffer|Buffer)"),
    ("py:(class|mod)", r"tuntap_cffi\.(\w+\.)?_\w+(\.\w+)?"),
    ("py:class", r"(tuntap_cffi\.aio\.)?(Waiters|BatchPollable)"),  # protocols aio uses, not in its __all__
]


# (contnode and the result are docutils nodes: docutils ships no type hints.)
def _short_reference(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Any) -> Optional[Any]:
    """Resolve a docstring's short name (``DeviceClosedError``, ``Device.readinto``, ``tuntap_cffi.Device``).

    The docstrings name things as the code's readers do; each is documented once, in the module that
    owns it, so a short name resolves to the documented object whose full name ends with it (the shortest such).
    """
    if node.get("refdomain") != "py":
        return None
    target = str(node["reftarget"])
    if target.startswith("tuntap_cffi.") and target.count(".") == 1:
        target = target.split(".", 1)[1]  # a top-level re-export: its home module documents it
    domain = env.get_domain("py")
    matches = [(name, obj) for name, obj in domain.objects.items() if name.endswith("." + target)]  # type: ignore[attr-defined]
    if not matches:
        return None
    # The shortest full name is the home (pytun_compat.Error.DeviceClosedError is a pytun flavour of it).
    matches.sort(key=lambda match: match[0].count("."))
    if len(matches) > 1 and matches[0][0].count(".") == matches[1][0].count("."):
        return None  # ambiguous: let nitpicky report it
    name, obj = matches[0]
    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _short_reference)

"""What the two golden layout tests (test_darwin_layout, test_freebsd_layout) check alike."""

from __future__ import annotations

import importlib.util
import pathlib
import re
from types import ModuleType
from typing import Any, Dict, Set

ROOT = pathlib.Path(__file__).resolve().parent.parent


def generator(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (tools/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_golden_is_what_the_generator_asks_for(golden: Dict[str, Any], module: ModuleType) -> None:
    """A struct, field, constant or ioctl added to the generator without regenerating fails here."""
    assert set(golden["sizeof"]) == set(golden["alignof"]) == set(module.STRUCTS)
    assert set(golden["offsetof"]) == {f"{s}:{f}" for s, fields in module.STRUCTS.items() for f in fields}
    assert set(golden["constants"]) == set(module.CONSTANTS)
    assert set(golden["ioctls"]) == set(module.IOCTLS)


def defined_structs(cdef: str) -> Set[str]:
    """The names of the structs *cdef* defines (not those it only uses)."""
    return set(re.findall(r"struct\s+(\w+)\s*\{", cdef))

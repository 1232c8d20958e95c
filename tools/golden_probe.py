"""The C probe both golden generators compile: sizes, offsets, constants and ioctl numbers, printed as rows.

``tools/darwin_golden.py`` (XNU) and ``tools/freebsd_golden.py`` (FreeBSD)
differ only in their headers, shims and compiler flags; the probe's text,
its build and the JSON document are written here once.
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Dict, List, Mapping, Sequence, Tuple

Row = Tuple[str, str, int]

#: The sockaddrs both BSDs declare alike (``sa_len`` first), with the fields the backends rely on.
BSD_SOCKADDRS: Dict[str, List[str]] = {
    "struct sockaddr": ["sa_len", "sa_family", "sa_data"],
    "struct in_addr": ["s_addr"],
    "struct sockaddr_in": ["sin_len", "sin_family", "sin_port", "sin_addr", "sin_zero"],
    "struct in6_addr": ["__u6_addr"],
    "struct sockaddr_in6": ["sin6_len", "sin6_family", "sin6_port", "sin6_flowinfo", "sin6_addr",
                            "sin6_scope_id"],
}


def probe_source(head: Sequence[str], includes: Sequence[str], structs: Mapping[str, Sequence[str]],
                 constants: Sequence[str], ioctls: Sequence[str]) -> str:
    """The C probe: one printf per number, ``kind<TAB>key<TAB>value`` (*head*: lines before the includes)."""
    out = list(head) + [f"#include <{h}>" for h in includes]
    out += [
        "int printf(const char *, ...);",
        '_Static_assert(sizeof(long) == 8 && sizeof(void *) == 8, "LP64 only");',
        "#define P(kind, key, v) printf(\"%s\\t%s\\t%llu\\n\", kind, key, (unsigned long long)(v))",
        "int main(void) {",
    ]
    for struct, fields in structs.items():
        out.append(f'  P("sizeof", "{struct}", sizeof({struct}));')
        out.append(f'  P("alignof", "{struct}", _Alignof({struct}));')
        for field in fields:
            out.append(f'  P("offsetof", "{struct}:{field}", offsetof({struct}, {field}));')
    for name in constants:
        out.append(f'  P("constants", "{name}", {name});')
    for name in ioctls:
        out.append(f'  P("ioctls", "{name}", {name});')
    out += ["  return 0;", "}"]
    return "\n".join(out) + "\n"


def build_and_run(source: str, flags: Sequence[str], work: pathlib.Path) -> List[Row]:
    """Compile *source* with ``gcc -m64 -nostdinc`` plus *flags* (gcc's own headers stay visible), run it."""
    (work / "probe.c").write_text(source)
    gcc_include = subprocess.run(
        ["gcc", "-print-file-name=include"], check=True, capture_output=True, text=True,
    ).stdout.strip()
    cmd = ["gcc", "-m64", "-std=gnu11", "-nostdinc", *flags, "-isystem", gcc_include,
           "-o", str(work / "probe"), str(work / "probe.c")]
    subprocess.run(cmd, check=True)
    rows = subprocess.run([str(work / "probe")], check=True, capture_output=True, text=True).stdout
    result = []
    for line in rows.splitlines():
        kind, key, value = line.split("\t")
        result.append((kind, key, int(value)))
    return result


def document(rows: List[Row], head: Dict[str, object]) -> Dict[str, object]:
    """The JSON document: *head* (provenance), then each kind of number by key."""
    doc = dict(head)
    for kind, key, value in rows:
        table = doc.setdefault(kind, {})
        assert isinstance(table, dict)
        table[key] = value
    return doc

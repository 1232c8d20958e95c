"""The README and the guides as a newcomer meets them: every snippet runs as written, and what they say happens.

Each ```python block of README.md and of the site's pages (docs/**/*.md)
runs as a script, once, where it is written, and each ```sh block
that is meant to run runs through ``sh``, in a network and mount namespace
of its own (``unshare --net --mount``): the snippets use the names and
addresses printed in the README (198.18.0.0/15, fd00::/8, names the kernel
picks or that no other test uses) without touching the host's interfaces,
and every interface a snippet made goes away with the namespace even when
it fails.  A snippet must also clean up after itself: the namespace's
interfaces after it ran must be those before (a persistent device left
behind would be left behind on the reader's machine too).

``.venv/bin/python`` and ``.venv/bin/tuntap-cffi``, which the README's set-up
command creates in the clone, are provided as wrappers around the
interpreter running the tests, in a scratch directory that stands for the
clone (``examples`` links to this repository's).

A block of another language, or an ```sh block this file does not know,
fails the run: no snippet escapes.  (The site's pages may also hold the
MyST directives in DIRECTIVES, such as ```{toctree}: not code.)
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import pytest

from tuntest import bind_to_device

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# The pages whose snippets run: the README, then the site's Markdown sources (not its build output).
PAGES = [README] + sorted(p for p in (REPO / "docs").rglob("*.md") if "_build" not in p.relative_to(REPO).parts)
# MyST directives the site's pages may fence (not code, not run); the README has none.
DIRECTIVES = {"{toctree}", "{include}"}
TIMEOUT = 60


class Block(NamedTuple):
    page: str  # relative to the repository
    lang: str
    line: int  # of the opening fence, 1-based
    text: str

    @property
    def where(self) -> str:
        return f"{self.page} line {self.line}"


def page_blocks(page: Path) -> List[Block]:
    blocks: List[Block] = []
    name = str(page.relative_to(REPO))
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(.*)$", lines[i])
        if m:
            start, lang, body = i + 1, m.group(2).strip(), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(name, lang, start, textwrap.dedent("\n".join(body)) + "\n"))
        i += 1
    return blocks


BLOCKS = [block for page in PAGES for block in page_blocks(page)]


def first_of_each(blocks: List[Block]) -> List[Block]:
    """One block per text: a snippet both the README's tour and a guide show runs once, where it appears first."""
    seen: Dict[str, Block] = {}
    for block in blocks:
        seen.setdefault(block.text, block)
    return list(seen.values())


PYTHON = first_of_each([b for b in BLOCKS if b.lang == "python"])
SH = first_of_each([b for b in BLOCKS if b.lang == "sh"])

# How each ```sh block is checked, by its first line.  "skip" blocks say why.
# "serve" blocks start a program on their first line (a trailing comment
# dropped), wait for its first line of output, run the lines up to "# after"
# (what the README says to do in another terminal: they must succeed unless
# "clients may fail"), stop the program with SIGINT like Ctrl-C (unless it
# "ends" by itself) and run the rest; the program must exit with status 0.
SH_BLOCKS: Dict[str, Tuple[str, str]] = {
    "python3 -c 'import ensurepip'": ("skip", "installs packages from the network: checked by hand on a scratch clone (see the commit message)"),
    "bash tests/run.sh": ("skip", "the test suite itself"),
    "bash bench/run.sh": ("skip", "the benchmark: ~10 minutes, not a test"),
    ".venv/bin/python -m pip install -q '.[docs]'": ("skip", "installs the docs extra from the network: tests/test_docs.py builds the same site, with -W"),
    ".venv/bin/tuntap-cffi dump --address 198.18.12.1/24 --pcap - | wireshark": ("skip", "needs Wireshark's GUI"),
    ".venv/bin/tuntap-cffi dump tun%d --address 198.18.12.1/24 --no-ipv6 --count 3": ("serve", "ends; clients may fail"),
    ".venv/bin/tuntap-cffi dump rec0 --address 198.18.15.1/24": ("serve", "ends; clients may fail"),
    "ip netns add blue && .venv/bin/tuntap-cffi dump tun0 --netns blue": ("serve", "ends; clients may fail"),
    ".venv/bin/tuntap-cffi dump tun%d --address 198.18.32.1/24 --filter icmp": ("serve", "ends; clients may fail"),
    ".venv/bin/python examples/dump.py": ("serve", "clients may fail"),
    ".venv/bin/python examples/icmp_responder.py": ("serve", ""),
    ".venv/bin/python examples/tap_responder.py": ("serve", ""),
    ".venv/bin/python examples/async_echo.py": ("serve", ""),
    ".venv/bin/python examples/forward.py": ("serve", ""),
}

SAFE_NETS = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("fc00::/7")]


def sh_kind(block: Block) -> Tuple[str, str]:
    first = block.text.strip().splitlines()[0]
    for prefix, kind in SH_BLOCKS.items():
        if first.startswith(prefix):
            return kind
    raise AssertionError(f"{block.where}: an ```sh block this test does not know (add it to SH_BLOCKS): {first!r}")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory standing for the clone after the set-up command: .venv/bin/{python,tuntap-cffi}, examples/."""
    root = tmp_path_factory.mktemp("clone")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    env = f"PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}"
    (bin_dir / "python").write_text(f'#!/bin/sh\n{env} exec {sys.executable} "$@"\n')
    (bin_dir / "tuntap-cffi").write_text(f'#!/bin/sh\n{env} exec {sys.executable} -m tuntap_cffi "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    (root / "examples").symlink_to(REPO / "examples")
    return root


# Runs inside the new namespaces: private sysfs (so /sys/class/net is this
# namespace's) and /run/netns (so `ip netns add` leaves nothing on the host),
# loopback up, then the command; then lists the interfaces before and after.
NS_PRELUDE = """\
mount -t sysfs sysfs /sys || exit 97
mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns || exit 97
ip link set lo up
links() { ls /sys/class/net | sort | tr '\\n' ' '; }
echo "@@links-before $(links)" >&2
"""


def in_namespace(script: str) -> List[str]:
    """The argv that runs sh *script* in a fresh network + mount namespace."""
    return ["unshare", "--net", "--mount", "--", "sh", "-c", NS_PRELUDE + script]


def check_links(stderr: str) -> None:
    before = re.search(r"@@links-before (.*)", stderr)
    after = re.search(r"@@links-after (.*)", stderr)
    assert before and after, stderr
    assert after.group(1).split() == before.group(1).split(), f"the snippet left interfaces behind: {after.group(1)}"


def run_bounded(argv: List[str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    """Run *argv* with a timeout; on timeout kill its whole process group (a snippet stuck in the namespace too)."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"still running after {TIMEOUT} s:\nstdout:\n{out}\nstderr:\n{err}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_python_block(block: Block, clone: Path) -> "subprocess.CompletedProcess[str]":
    slug = re.sub(r"\W", "_", block.page)  # snippets of different pages may share a line number
    script = clone / f"snippet_{slug}_{block.line}.py"
    script.write_text(block.text)
    return run_bounded(
        in_namespace(f'.venv/bin/python -X dev {script}; rc=$?; echo "@@links-after $(links)" >&2; exit $rc'), clone,
    )


@pytest.mark.device
@pytest.mark.parametrize("block", PYTHON, ids=[f"{b.page}:{b.line}" for b in PYTHON])
def test_python_snippet_runs(block: Block, clone: Path) -> None:
    proc = run_python_block(block, clone)
    assert proc.returncode == 0, f"{block.where}:\n{block.text}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Warning" not in proc.stderr, proc.stderr  # e.g. an unclosed device's ResourceWarning
    check_links(proc.stderr)


def serve_parts(block: Block) -> Tuple[str, str, str]:
    """(the program, what runs while it serves, what runs after it stopped)."""
    lines = block.text.strip().splitlines()
    lines[0] = re.sub(r"\s+#.*$", "", lines[0])
    during: List[str] = []
    after: List[str] = []
    target = during
    for line in lines[1:]:
        if line.startswith("# after"):
            target = after
        target.append(line)
    return lines[0], "\n".join(during), "\n".join(after)


def _runs(block: Block) -> bool:
    """Whether test_sh_snippet_runs takes *block*: not a "skip" one (SH_BLOCKS says why each is not run)."""
    try:
        return sh_kind(block)[0] != "skip"
    except AssertionError:  # unknown: test_every_block_is_checked names it, and running it fails too
        return True


#: The ```sh blocks that run; the "skip" ones are no test cases at all (a device test never skips).
RUN_SH = [b for b in SH if _runs(b)]


@pytest.mark.device
@pytest.mark.parametrize("block", RUN_SH, ids=[f"{b.page}:{b.line}" for b in RUN_SH])
def test_sh_snippet_runs(block: Block, clone: Path) -> None:
    kind, note = sh_kind(block)
    server, during, after = serve_parts(block)
    # The program runs in the background of the namespace's shell (with
    # SIGINT back to default: sh starts background jobs ignoring it); its
    # output goes to a file the shell prints once it has stopped.
    script = f"""
rm -f server.out during.out after.out
env --default-signal=INT {server} > server.out 2>&1 &
pid=$!
i=0; until [ -s server.out ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done
echo "@@ready" >&2; cat server.out >&2
( set -e
{during}
) > during.out 2>&1; during=$?
i=0; while kill -0 $pid 2>/dev/null && [ $i -lt {100 if "ends" in note else 0} ]; do sleep 0.1; i=$((i+1)); done
kill -INT $pid 2>/dev/null; wait $pid; server=$?
( set -e
{after}
) > after.out 2>&1; after=$?
echo "@@links-after $(links)" >&2
echo "@@status $server $during $after" >&2
echo "== server"; cat server.out; echo "== during"; cat during.out; echo "== after"; cat after.out
"""
    proc = run_bounded(in_namespace(script), clone)
    report = f"{block.where}:\n{block.text}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    status = re.search(r"@@status (\d+) (\d+) (\d+)", proc.stderr)
    assert status, report
    server_rc, during_rc, after_rc = map(int, status.groups())
    assert server_rc == 0, report
    if "clients may fail" not in note:
        assert during_rc == 0, report
    assert after_rc == 0, report
    check_links(proc.stderr)


def test_every_block_is_checked() -> None:
    """No snippet escapes: every block is python (run), sh (known), text, or (on the site's pages) a known directive."""
    assert PYTHON and SH
    for block in BLOCKS:
        if block.page != "README.md" and block.lang.split(" ", 1)[0] in DIRECTIVES:  # (and its argument)
            continue
        assert block.lang in ("python", "sh", "text"), f"{block.where}: a ```{block.lang} block this test does not run"
        if block.lang == "sh":
            sh_kind(block)


def test_snippet_addresses_are_safe_to_use() -> None:
    """Addresses in runnable snippets are from 198.18.0.0/15 (RFC 2544) or ULA fd00::/8: pasting them hurts no network."""
    for block in BLOCKS:
        if block.lang == "text" or block.lang.split(" ", 1)[0] in DIRECTIVES:
            continue
        for word in re.findall(r"[0-9a-fA-F:.]*[:.][0-9a-fA-F:.]+(?:/\d+)?", block.text):
            try:
                net = ipaddress.ip_network(word.strip(".:"), strict=False)
            except ValueError:
                continue
            if net.prefixlen == 0 and "/" not in word or word == "255.255.255.0":  # (a netmask)
                continue
            assert any(net.subnet_of(safe) for safe in SAFE_NETS if safe.version == net.version), (
                f"{block.where}: {word} is outside 198.18.0.0/15 and fc00::/7"
            )


# ---------------------------------------------------------------- what the text states

def page_says(page: str, *phrases: str) -> None:
    """*page* (README.md or a docs/ source) states each of *phrases* (whitespace-insensitive)."""
    text = " ".join((REPO / page).read_text().split())
    for phrase in phrases:
        assert phrase in text, f"{page} no longer says: {phrase!r}"


@pytest.mark.device
def test_detached_queue_behaviour(ifname: str, subnet: str) -> None:
    """A detached queue: a write goes through, a non-blocking read raises BlockingIOError, a blocking read waits.

    (The error table once said DeviceNotReadyError; Linux 6.x does this.)
    The packet written on the detached queue reaches the stack: a socket
    on the interface's address receives it.
    """
    from tuntest import ipv4_udp
    from tuntap_cffi import DeviceClosedError, open_queues

    first, detached = open_queues(ifname, 2)
    try:
        first.add_address(f"{subnet}.1/24")
        first.up()
        detached.detach_queue()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((f"{subnet}.1", 0))
            sock.settimeout(5)
            packet = ipv4_udp(f"{subnet}.2", f"{subnet}.1", 4000, sock.getsockname()[1], b"from a detached queue")
            assert detached.write(packet) == len(packet)
            assert sock.recv(100) == b"from a detached queue"
        # Traffic into the interface goes to the attached queue only.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            bind_to_device(out, ifname)
            for port in range(5000, 5016):  # 16 flows: with two attached queues some would hash to the second
                out.sendto(b"x", (f"{subnet}.2", port))
        deadline = time.monotonic() + 5
        first.blocking = False
        got = 0
        ours = socket.inet_aton(f"{subnet}.2")
        while got < 16 and time.monotonic() < deadline:
            try:
                packet = first.read()
            except BlockingIOError:
                time.sleep(0.01)
                continue
            got += packet[0] >> 4 == 4 and packet[9] == 17 and packet[16:20] == ours  # not IPv6 chatter
        assert got == 16
        detached.blocking = False
        with pytest.raises(BlockingIOError):
            detached.read()
        detached.blocking = True
        outcome: List[object] = []
        reader = threading.Thread(target=lambda: outcome.append(_read_or_error(detached)))
        reader.start()
        reader.join(1.0)
        assert reader.is_alive() and not outcome  # blocked: no packet is steered to a detached queue
        detached.close()
        reader.join(5)
        assert not reader.is_alive() and isinstance(outcome[0], DeviceClosedError)
    finally:
        first.close()
        detached.close()
    page_says(
        "docs/guides/offloads.md",
        "A detached queue (`detach_queue()`) gets no packets: a blocking read waits until it is attached "
        "again or closed, a non-blocking one raises `BlockingIOError`; a write on it still sends the packet "
        "into the kernel.",
    )


def _read_or_error(dev: "object") -> object:
    try:
        return dev.read()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the test looks at which
        return exc


def dump_argv(*args: str) -> List[str]:
    return [sys.executable, "-m", "tuntap_cffi", "dump", *args]


def run_dump(args: List[str], seconds: float) -> Tuple[int, str, str, Optional[str]]:
    """Run dump for *seconds* after its banner, then Ctrl-C it: (status, stdout, stderr, disable_ipv6 read meanwhile)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(dump_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert "listening on" in banner, banner + proc.stderr.read()
        name = args[0]
        try:
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6") as f:
                sysctl: Optional[str] = f.read().strip()
        except FileNotFoundError:
            sysctl = None
        time.sleep(seconds)  # the quiet period itself is what is measured
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, banner + err, sysctl


@pytest.mark.device
def test_dump_no_ipv6_sends_nothing_of_its_own(ifnames: "object", subnet: str) -> None:
    """`dump --no-ipv6`: IPv6 is off before the TUN comes up, and in a second up it sees no packet at all."""
    name = ifnames()  # type: ignore[operator]
    status, out, err, sysctl = run_dump([name, "--address", f"{subnet}.1/24", "--no-ipv6"], 1.0)
    assert status == 0, err
    assert sysctl == "1"
    assert out == "", out  # no router solicitation, no MLD report
    assert "0 packets captured" in err
    page_says("docs/guides/capture.md", "`--no-ipv6`")


@pytest.mark.device
def test_dump_without_no_ipv6_sees_the_chatter(ifnames: "object", subnet: str) -> None:
    """The control: without --no-ipv6 the same TUN sends IPv6 packets of its own once up (what --count would count)."""
    name = ifnames()  # type: ignore[operator]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(dump_argv(name, "--address", f"{subnet}.1/24", "--count", "1"),
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert " IPv6 " in proc.stdout and "ICMPv6" in proc.stdout, proc.stdout


def test_dump_no_ipv6_refuses_an_ipv6_address() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(dump_argv("--no-ipv6", "--address", "fd00:7474:1::1/64"), capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and "cannot be combined with an IPv6 --address" in proc.stderr, proc.stderr


@pytest.mark.device
def test_disable_ipv6_keeps_an_up_tun_quiet(ifname: str) -> None:
    from tuntap_cffi import DeviceClosedError, open_tun

    with open_tun(ifname, nonblocking=True) as dev:
        dev.disable_ipv6()
        dev.disable_ipv6()  # harmless twice
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6") as f:
            assert f.read().strip() == "1"
        dev.up()
        assert not [a for a in dev.addresses if a.interface.version == 6]  # not even a link-local one
        time.sleep(1.0)  # the quiet period itself is what is measured
        with pytest.raises(BlockingIOError):
            dev.read()
    with pytest.raises(DeviceClosedError):
        dev.disable_ipv6()


@pytest.mark.device
def test_set_ipv6_errors_name_the_interface(ifname: str) -> None:
    """No such interface: DeviceNotFoundError; as user nobody: the permission error, both naming the interface."""
    from tuntap_cffi import DeviceNotFoundError, config, open_tun

    with pytest.raises(DeviceNotFoundError) as missing:
        config.set_ipv6(ifname, False)
    assert missing.value.filename == ifname
    with pytest.raises(TypeError):
        config.set_ipv6(ifname, 0)  # type: ignore[arg-type]
    with open_tun(ifname):
        code = (f"from tuntap_cffi import config, TunTapPermissionError\n"
                f"try:\n    config.set_ipv6({ifname!r}, False)\n"
                f"except TunTapPermissionError as exc:\n    print('denied', exc.filename)\n")
        proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert proc.stdout.split() == ["denied", ifname], proc.stdout + proc.stderr
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6") as f:
            assert f.read().strip() == "0"


def test_the_error_table_names_every_error_the_library_raises() -> None:
    """Every exception class the package exports has a row, and so do the builtins it raises for kernel
    outcomes: BlockingIOError (EAGAIN) and TimeoutError (the timeouts of readinto/read/write/events)."""
    import tuntap_cffi

    section = (REPO / "docs/guides/errors.md").read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `(\w+)`", section, re.M)}
    exported = {name for name in tuntap_cffi.__all__
                if isinstance(getattr(tuntap_cffi, name), type) and issubclass(getattr(tuntap_cffi, name), BaseException)}
    assert "LibpcapNotFoundError" in exported and "NamespaceNotFoundError" in exported
    missing = (exported | {"BlockingIOError", "TimeoutError"}) - rows
    assert not missing, f"the error table (docs/guides/errors.md) has no row for {sorted(missing)}"

"""Opening a utun, against the simulated XNU kernel of ``darwin_kernel.py`` (runs on Linux).

The backend talks to ``tuntap_cffi._darwin.libc``; here that boundary is the
simulated kernel, whose fds are real socketpairs: the fd counts are real.
"""

from __future__ import annotations

import errno
import os
from typing import Iterator

import pytest

from darwin_kernel import CONTROLS, CTL_MAXUNIT, UTUN_CONTROL, XnuKernel
from tuntest import fd_count
from tuntap_cffi import DeviceBusyError, DevicesExhaustedError, TunTapPermissionError, UnsupportedPlatformError
from tuntap_cffi._darwin import backend, cdefs, libc


@pytest.fixture
def xnu() -> Iterator[XnuKernel]:
    kernel = XnuKernel()
    libc.use(kernel)
    try:
        yield kernel
    finally:
        libc.use(None)
        kernel.teardown()


def test_the_kernel_picks_the_first_free_unit(xnu: XnuKernel) -> None:
    fd0, name0 = backend.open_utun("")
    fd1, name1 = backend.open_utun("")
    assert (name0, name1) == ("utun0", "utun1")
    assert xnu.interfaces == ["utun0", "utun1"]
    assert ("sockaddr_ctl", 32, 32, 2, CONTROLS[UTUN_CONTROL], 0) in xnu.calls  # sc_unit 0: kernel's pick


def test_a_named_unit_is_unit_n_plus_one(xnu: XnuKernel) -> None:
    fd, name = backend.open_utun("utun5")
    assert name == "utun5" and xnu.interfaces == ["utun5"]
    assert ("sockaddr_ctl", 32, 32, 2, CONTROLS[UTUN_CONTROL], 6) in xnu.calls
    _, picked = backend.open_utun("")
    assert picked == "utun0"  # the gap below utun5 is free


def test_the_fd_is_nonblocking_and_close_on_exec(xnu: XnuKernel) -> None:
    fd, _ = backend.open_utun("")
    assert not os.get_blocking(fd) and not os.get_inheritable(fd)


def test_create_opens_a_utun_for_tun_and_refuses_tap(xnu: XnuKernel) -> None:
    fd, name = backend.create("utun3", 0, None, None, None, "TUN")
    assert name == "utun3" and fd in xnu.sockets
    with pytest.raises(ValueError, match="open_tap"):  # a feth pair: two fds, built by open_tap()
        backend.create("", 0, None, None, None, "TAP")


def test_a_taken_unit_is_busy_and_leaks_nothing(xnu: XnuKernel) -> None:
    backend.open_utun("utun2")
    before = fd_count()
    with pytest.raises(DeviceBusyError) as info:
        backend.open_utun("utun2")
    assert info.value.errno == errno.EBUSY and info.value.filename == "utun2"
    assert "held by another socket" in str(info.value)
    assert fd_count() == before and len(xnu.sockets) == 1


def test_no_free_unit_is_exhaustion_and_leaks_nothing(xnu: XnuKernel) -> None:
    """Every unit taken (utun_ctl_setup finds none: EBUSY for unit 0): the seed's ErrExhausted."""
    xnu.units.update((unit, -1) for unit in range(1, CTL_MAXUNIT))  # (held by other processes' sockets)
    before = fd_count()
    with pytest.raises(DevicesExhaustedError) as info:
        backend.open_utun("")
    assert info.value.errno == errno.EBUSY and "every utun unit is taken" in str(info.value)
    assert fd_count() == before and not xnu.sockets


def test_without_root_permission_error_says_run_as_root(xnu: XnuKernel) -> None:
    xnu.root = False
    before = fd_count()
    with pytest.raises(TunTapPermissionError) as info:
        backend.open_utun("")
    assert info.value.errno == errno.EPERM and isinstance(info.value, PermissionError)
    assert "run as root" in str(info.value) and "privileged" in str(info.value)
    assert fd_count() == before and not xnu.sockets and not xnu.interfaces


@pytest.mark.parametrize("name", ["tun0", "utun", "utunx", "utun-1", "utun01", "utun+1", "utun\u0663",
                                  "utun65535", "utun 1", "feth0"])
def test_a_bad_name_is_a_value_error_before_any_call(xnu: XnuKernel, name: str) -> None:
    with pytest.raises(ValueError):
        backend.open_utun(name)
    assert xnu.calls == []


def test_a_name_of_another_type_is_a_type_error_before_any_call(xnu: XnuKernel) -> None:
    with pytest.raises(TypeError):
        backend.open_utun(b"utun0")  # type: ignore[arg-type]
    assert xnu.calls == []


def test_the_last_unit_name_is_accepted(xnu: XnuKernel) -> None:
    assert backend.open_utun("utun65534")[1] == "utun65534"


def test_close_frees_the_unit(xnu: XnuKernel) -> None:
    before = fd_count()
    fd, name = backend.open_utun("utun4")
    assert fd_count() == before + 2  # the user end and the kernel's end of the socketpair
    assert xnu.close(fd) == 0
    assert xnu.interfaces == [] and fd_count() == before
    assert backend.open_utun("utun4")[1] == "utun4"


def test_every_failing_step_closes_the_fd(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at each call after socket(): the library's error, the fd closed, the unit free."""
    for step in ("ioctl", "connect", "getsockopt", "fcntl"):
        monkeypatch.setattr(xnu, step, lambda *args, _e=errno.EIO: xnu._fail(_e))
        before = fd_count()
        with pytest.raises(OSError) as info:
            backend.open_utun("utun1")
        assert info.value.errno == errno.EIO and info.value.filename == "utun1", step
        assert fd_count() == before and not xnu.sockets and not xnu.interfaces, step
        monkeypatch.undo()


def test_socket_failure_is_the_librarys_error(xnu: XnuKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xnu, "socket", lambda *args: xnu._fail(errno.EMFILE))
    with pytest.raises(OSError) as info:
        backend.open_utun("")
    assert info.value.errno == errno.EMFILE and "open files" in str(info.value)


# ------------------------------------------------- the simulator's own rules (the oracle above)

def test_kernel_rules_getsockopt_before_connect_and_bad_sockaddr(xnu: XnuKernel) -> None:
    ffi = xnu.ffi
    fd = xnu.socket(32, 2, 2)
    name, size = ffi.new("char[16]"), ffi.new("uint32_t *", 16)
    assert xnu.getsockopt(fd, 2, 2, name, size) == -1 and xnu.errno() == errno.EINVAL  # ctl_ctloutput
    info = ffi.new("struct ctl_info *")
    info.ctl_name = b"com.example.nothing"
    assert xnu.ioctl(fd, cdefs.ioctl_numbers(ffi.sizeof)["CTLIOCGINFO"], info) == -1
    assert xnu.errno() == errno.ENOENT
    addr = ffi.new("struct sockaddr_ctl *", {"sc_len": 32, "sc_family": 32, "ss_sysaddr": 2,
                                             "sc_id": CONTROLS[UTUN_CONTROL]})
    assert xnu.connect(fd, addr, 16) == -1 and xnu.errno() == errno.EINVAL  # ctl_setup_kctl: sa_len
    addr.sc_id = 1
    assert xnu.connect(fd, addr, 32) == -1 and xnu.errno() == errno.ENOENT  # ctl_find_by_id_unit
    assert xnu.close(fd) == 0


def test_without_the_simulator_linux_says_macos_only() -> None:
    libc.use(None)
    with pytest.raises(UnsupportedPlatformError) as info:
        backend.open_utun("utun0")
    assert "macOS" in str(info.value)


def test_ioctl_and_fcntl_stay_variadic() -> None:
    """Apple arm64 passes variadic arguments on the stack: a fixed declaration would pass garbage there."""
    ffi = XnuKernel().ffi
    lib = ffi.dlopen(None)  # this OS's libc, only for the declared types: nothing is called
    for name in ("ioctl", "fcntl", "open"):
        assert ffi.typeof(getattr(lib, name)).ellipsis, name
    for name in ("socket", "connect", "getsockopt", "readv", "writev", "pipe", "dup2", "poll"):
        assert not ffi.typeof(getattr(lib, name)).ellipsis, name


def test_the_utun_fd_carries_datagrams_to_the_kernel_end(xnu: XnuKernel) -> None:
    """The socketpair behind a utun fd is real: one writev is one datagram at the kernel's end and back."""
    fd, _ = backend.open_utun("")
    ffi, peer = xnu.ffi, xnu.sockets[fd].peer
    head, body = ffi.new("char[]", b"\0\0\0\x02"), ffi.new("char[]", b"packet")
    iov = ffi.new("struct iovec[2]", [(head, 4), (body, 6)])
    assert xnu.writev(fd, iov, 2) == 10
    assert os.read(peer, 100) == b"\0\0\0\x02packet"
    os.write(peer, b"\0\0\0\x1eanswer")
    into_head, into_body = ffi.new("char[4]"), ffi.new("char[16]")
    iov = ffi.new("struct iovec[2]", [(into_head, 4), (into_body, 16)])
    assert xnu.readv(fd, iov, 2) == 10
    assert ffi.buffer(into_head)[:] == b"\0\0\0\x1e" and ffi.buffer(into_body, 6)[:] == b"answer"
    assert xnu.read(fd, into_body, 16) == -1 and xnu.errno() == 35  # EAGAIN is 35 on macOS
    assert xnu.write(fd, body, 6) == 6 and os.read(peer, 100) == b"packet"

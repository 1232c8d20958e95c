"""Announced calls: how a call says it holds a device's fd numbers across Python code.

Internal.  The why is device.py's "Closing without fd-number reuse": close()
frees the retired fd number, the wakeup and control fds and the batch
engines only once no other thread is inside a call that announced itself.
The Device keeps that record (``_enter``, ``_exit``, ``_others_inside``);
the modules whose code holds a device's fds across Python code (the engine
table, the link configuration) use it through :class:`Announcer` and
:func:`announced`, and need nothing else of the close protocol.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol, TypeVar, cast

__all__ = ["Announcer", "announced"]


class Announcer(Protocol):
    """What announces a call: a Device."""

    def _enter(self) -> int:
        """Announce this thread (a counter per thread); return the key for _exit."""
    def _exit(self, me: int) -> None:
        """Withdraw what _enter announced."""
    def _others_inside(self) -> bool:
        """Whether another thread is inside an announced call."""


_F = TypeVar("_F", bound=Callable[..., Any])


def announced(method: _F) -> _F:
    """Wrap a method that holds a device's fd numbers across Python code: it announces itself."""

    def wrapper(self: Announcer, *args: Any, **kwargs: Any) -> Any:
        me = self._enter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._exit(me)

    return cast(_F, functools.update_wrapper(wrapper, method))

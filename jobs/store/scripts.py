"""The store's Lua scripts, kept as ``.lua`` files beside this module (like SQL in migrations).

Each script is prefixed with the status names and the terminal set of ``jobs.lifecycle``, so a
status is spelled in one place: a script writes ``STATUS.running`` and asks ``TERMINAL[st]``.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from jobs.contract import JobStatus


def _prelude() -> str:
    names = ", ".join(f"{s.name.lower()} = '{s.value}'" for s in JobStatus)
    terminal = ", ".join(f"['{s.value}'] = true" for s in JobStatus if s.is_terminal())
    return f"local STATUS = {{{names}}}\nlocal TERMINAL = {{{terminal}}}\n"


@functools.cache
def source(name: str) -> str:
    """The full text of ``lua/<name>.lua`` as Redis runs it."""
    body = resources.files("jobs.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    return _prelude() + body


@functools.cache
def sha(name: str) -> str:
    """The SHA-1 that ``EVALSHA`` names the script by."""
    return hashlib.sha1(source(name).encode()).hexdigest()

"""Reading JSON Lines the way the format says: records split on ``\\n`` only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class InputError(Exception):
    """An input file cannot be read (the CLI prints the message and exits non-zero)."""


def open_input(path: Path) -> BinaryIO:
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .jsonl file")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Yield each line without its ``\\n``; a final line without ``\\n`` is still a line,
    a trailing ``\\n`` at the end of the file does not start another one. ``\\r`` and other
    Unicode line separators are part of the line (JSON treats ``\\r`` as whitespace)."""
    rest = b""
    while True:
        try:
            chunk = stream.read(CHUNK)
        except OSError as exc:
            raise InputError(f"read failed: {exc.strerror or exc}") from None
        if not chunk:
            break
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest

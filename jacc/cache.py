"""The build cache: compiled programs under `.jacc/cache/` beside the app.

`serve` compiles its program at every start and, under `--dev`, at every save;
a program whose text has not changed is read from here instead of parsed
again. An entry is keyed by what decides the compiled code: the source text, the
file name the code carries for tracebacks, jacc's version and its own files
(the grammar and the compiler's modules, so that a development checkout that
changes without a new version misses), and the Python that compiled it (a code
object only loads into the Python that made it). It holds the code object
(`marshal`, as a `.pyc` does) and the warnings.

One entry per source file, overwritten when the key changes, so the folder
does not grow. An entry that is stale, damaged (its payload's hash is checked
before `marshal` reads it) or unreadable is a miss; one that cannot be written
is no entry. Either way the program is compiled as if there were no cache.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import os
import sys
import tempfile
import types
from importlib import resources
from pathlib import Path

from . import __version__
from .diagnostics import Diagnostic
from .source import Span

FOLDER = Path(".jacc") / "cache"
_MAGIC = b"jacc build cache 1\n"
_DIGEST = 32  # bytes of a sha256


def entry_path(source: Path) -> Path:
    """Where the entry of the program at `source` is kept."""
    source = Path(source).resolve()
    name = hashlib.sha256(str(source).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return source.parent / FOLDER / f"{source.stem}-{name}.code"


def key(text: str, filename: str) -> bytes:
    """The digest of everything that decides the code compiled from `text`."""
    digest = hashlib.sha256(_compiler_fingerprint())
    for part in (filename, text):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little") + encoded)
    return digest.digest()


def load(path: Path, expected: bytes) -> tuple[types.CodeType, list[Diagnostic]] | None:
    """The code and warnings of the entry at `path` if it was made for `expected`."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    made_for_at, checksum_at = len(_MAGIC), len(_MAGIC) + _DIGEST
    made_for = data[made_for_at:checksum_at]
    checksum = data[checksum_at:checksum_at + _DIGEST]
    payload = data[checksum_at + _DIGEST:]
    if (not data.startswith(_MAGIC) or made_for != expected
            or hashlib.sha256(payload).digest() != checksum):
        return None
    try:
        code, warnings = marshal.loads(payload)
        if not isinstance(code, types.CodeType):
            return None
        return code, [Diagnostic(c, message, Span(*span), help_)
                      for c, message, span, help_ in warnings]
    except (EOFError, ValueError, TypeError):
        return None


def store(path: Path, made_for: bytes, code: types.CodeType,
          warnings: list[Diagnostic]) -> None:
    """Write the entry at `path`, whole or not at all."""
    flat = [(d.code, d.message, (d.span.line, d.span.column, d.span.end_line,
                                 d.span.end_column), d.help) for d in warnings]
    payload = marshal.dumps((code, flat))
    data = _MAGIC + made_for + hashlib.sha256(payload).digest() + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a reader sees the old entry or the new one.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass  # a read-only folder, a full disk: the next start compiles again


@functools.cache
def _compiler_fingerprint() -> bytes:
    digest = hashlib.sha256(f"{__version__}\n{sys.implementation.cache_tag}\n".encode())
    digest.update(importlib.util.MAGIC_NUMBER)
    grammar = resources.files("jacc.grammar").joinpath("jac.lark")
    for file in [grammar, *sorted(Path(__file__).parent.glob("*.py"))]:
        digest.update(file.read_bytes())
    return digest.digest()

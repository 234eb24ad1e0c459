"""Content hashes that decide when a result is stale: package code, files, arrays.

``code_sha256`` hashes the modules of this package that a piece of code uses (the transitive
closure of its imports inside the package), so a workflow step can re-run exactly when the
code it runs changes. Modules are hashed through their syntax tree (:func:`ast.dump`):
comments and formatting do not count, code and docstrings do.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any, Iterable

PACKAGE = "transformer_dynamics"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(name: str) -> Path:
    path = PACKAGE_DIR / f"{name}.py"
    if not path.exists():
        raise ValueError(f"{PACKAGE} has no module '{name}' ({path} does not exist)")
    return path


def _imports(tree: ast.AST) -> set[str]:
    """Names of the package's modules imported anywhere in ``tree`` (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 or mod == PACKAGE or mod.startswith(PACKAGE + "."):
                base = mod[len(PACKAGE) + 1 :] if mod.startswith(PACKAGE + ".") else ("" if mod == PACKAGE else mod)
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import x / from transformer_dynamics import x
                    found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PACKAGE + "."):
                    found.add(a.name.split(".")[1])
    return {m for m in found if (PACKAGE_DIR / f"{m}.py").exists()}


def module_closure(modules: Iterable[str]) -> list[str]:
    """``modules`` plus every package module they import, transitively, and ``__init__``."""
    todo, seen = list(modules) + ["__init__"], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_imports(ast.parse(_module_file(m).read_text(encoding="utf-8"))) - seen)
    return sorted(seen)


def script_modules(script: str | Path) -> list[str]:
    """The package modules a script imports directly."""
    return sorted(_imports(ast.parse(Path(script).read_text(encoding="utf-8"))))


def code_sha256(modules: Iterable[str]) -> str:
    """SHA-256 of the syntax trees of ``modules`` and everything they import in the package."""
    h = hashlib.sha256()
    for m in module_closure(modules):
        h.update(m.encode() + b"\0")
        h.update(ast.dump(ast.parse(_module_file(m).read_text(encoding="utf-8"))).encode())
    return h.hexdigest()


def script_code_sha256(script: str | Path) -> str:
    """:func:`code_sha256` of the package modules a rule's script uses."""
    return code_sha256(script_modules(script))


def package_sha256() -> str:
    """:func:`code_sha256` of the whole package (every module)."""
    return code_sha256(sorted(p.stem for p in PACKAGE_DIR.glob("*.py")))


def file_sha256(paths: Iterable[str | Path]) -> str:
    """SHA-256 over the bytes of the given files, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def content_sha256(*parts: Any) -> str:
    """SHA-256 of numbers and strings: arrays by dtype, shape and bytes; sequences element-wise.

    Used as the fingerprint of what an extraction captures (sample ids, token ids, texts).
    """
    import numpy as np

    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, np.ndarray):
            h.update(f"nd{x.dtype.str}{x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, str):
            b = x.encode("utf-8", "surrogatepass")
            h.update(b"s%d:" % len(b) + b)
        elif isinstance(x, (bytes, bytearray)):
            h.update(b"b%d:" % len(x) + bytes(x))
        elif isinstance(x, (int, np.integer)):
            h.update(b"i%d;" % int(x))
        elif x is None:
            h.update(b"N;")
        elif isinstance(x, (list, tuple)):
            h.update(b"[%d:" % len(x))
            for y in x:
                feed(y)
            h.update(b"]")
        else:
            raise TypeError(f"cannot hash {type(x).__name__}")

    for part in parts:
        feed(part)
    return h.hexdigest()

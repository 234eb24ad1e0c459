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
from typing import Any, Iterable, Mapping

PACKAGE = "transformer_dynamics"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(name: str) -> Path:
    """The file of module ``name``, dotted relative to the package (``"store"``,
    ``"mutual_info.grid"``); a subpackage's name (``"figures"``) is its ``__init__.py`` and
    ``"__init__"`` the package's own."""
    rel = PACKAGE_DIR.joinpath(*name.split("."))
    for path in (rel.with_suffix(".py"), rel / "__init__.py"):
        if path.exists():
            return path
    raise ValueError(f"{PACKAGE} has no module '{name}' (neither {rel}.py nor {rel}/__init__.py exists)")


def _is_module(name: str) -> bool:
    try:
        _module_file(name)
    except ValueError:
        return False
    return bool(name)


def _with_parents(name: str) -> set[str]:
    """``name`` and the subpackages above it: importing ``figures.stats`` runs ``figures``."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def _imports(tree: ast.AST, where: str = "") -> set[str]:
    """The package's modules imported anywhere in ``tree`` (also inside functions), dotted,
    with their parent subpackages. ``where`` is the dotted name of the module the tree is
    (relative imports resolve against it); ``""`` for code outside the package (scripts)."""
    if where and where != "__init__":
        package = where if _module_file(where).name == "__init__.py" else where.rpartition(".")[0]
    else:
        package = ""
    found: set[str] = set()

    def add(base: str, names: Iterable[str]) -> None:
        if _is_module(base):
            found.add(base)
        for n in names:  # from x import y: y may be a module of package x
            sub = f"{base}.{n}" if base else n
            if _is_module(sub):
                found.add(sub)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                if not where:
                    continue
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([mod] if mod else []))
            elif mod == PACKAGE or mod.startswith(PACKAGE + "."):
                base = mod[len(PACKAGE) + 1 :]
            else:
                continue
            add(base, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PACKAGE + "."):
                    add(a.name[len(PACKAGE) + 1 :], [])
    return {p for m in found for p in _with_parents(m)}


def module_closure(modules: Iterable[str]) -> list[str]:
    """``modules`` (dotted names) plus every package module they import, transitively, the
    subpackages above them, and ``__init__``."""
    todo, seen = [p for m in modules for p in _with_parents(m)] + ["__init__"], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_imports(ast.parse(_module_file(m).read_text(encoding="utf-8")), m) - seen)
    return sorted(seen)


def script_modules(script: str | Path) -> list[str]:
    """The package modules a script imports directly."""
    return sorted(_imports(ast.parse(Path(script).read_text(encoding="utf-8"))))


def all_modules() -> list[str]:
    """Every module of the package, dotted (subpackages by their name, the package as ``__init__``)."""
    out = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


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
    return code_sha256(all_modules())


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


class MadeForError(RuntimeError):
    """An input was made for other settings than the job reading it asks for."""


def check_made_for(what: str | Path, recorded: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Stop when ``what`` (an input file or store) was made for other settings than ``expected``.

    ``recorded`` holds the settings ``what`` was made from (e.g. a store's ``n_samples``,
    ``seed``, ``dtype``: :func:`transformer_dynamics.store.made_for`), ``expected`` those of
    the job about to read it (its params). Every key of ``expected`` must match; the error
    names each mismatch and the fix on its first line. This holds whatever Snakemake's rerun
    triggers decided (e.g. ``--rerun-triggers mtime`` ignores params, and a params trigger
    does not fire for a job whose input is missing).
    """
    diff = [k for k in expected if recorded.get(k, "(not recorded)") != expected[k]]
    if diff:
        was = ", ".join(f"{k}={recorded.get(k, '(not recorded)')}" for k in diff)
        now = ", ".join(f"{k}={expected[k]}" for k in diff)
        raise MadeForError(
            f"{what} was made for {was}; this job asks {now}: it is stale. Delete it and run snakemake "
            "again (or run with the config it was made with)"
        )

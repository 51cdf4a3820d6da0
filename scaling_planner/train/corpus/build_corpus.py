"""Rebuild the shipped corpora from text installed on this machine (no network).

``python_docs.txt`` (the default of :class:`scaling_planner.train.data.Corpus`): every entry of
``pydoc_data.topics.topics`` (the language-reference sections that ``help()`` shows) and every distinct
docstring of 40+ characters of the standard-library modules, classes and functions (test suites,
idlelib, lib2to3 and site-packages left out).

``docs_large.txt.xz`` (the sweep's default, :data:`scaling_planner.train.data.LARGE_CORPUS`): the same
documents plus every distinct docstring of 40+ characters of six BSD-3-licensed packages from PyPI:
torch, numpy, sympy, networkx, scipy and pandas (their test suites left out), xz-compressed. Large
enough that no rung of the default sweep reads a byte twice.

The documents are shuffled with ``random.Random(0)`` so that the last 10% of the file (the
validation split of :class:`~scaling_planner.train.data.Corpus`) is a random sample of documents,
and joined with a blank line. The output depends on the Python and package versions; README.md
records the ones used.

    python scaling_planner/train/corpus/build_corpus.py [--large] [OUT]
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import lzma
import random
import sys
import sysconfig
from pathlib import Path

SKIP = {"test", "tests", "testing", "idlelib", "lib2to3", "site-packages", "pydoc_data", "turtledemo"}
PACKAGES = ("torch", "numpy", "sympy", "networkx", "scipy", "pandas")
"""Packages whose docstrings join the large corpus: BSD-3-Clause each."""


def docstrings(root: Path, seen: set[str], skip: set[str] = SKIP) -> list[str]:
    """Every distinct docstring of 40+ characters of the modules, classes and functions under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc and len(doc) >= 40 and doc not in seen:
                    seen.add(doc)
                    out.append(doc)
    return out


def documents(packages: tuple[str, ...] = ()) -> list[str]:
    from pydoc_data.topics import topics

    docs = [text.strip() for _, text in sorted(topics.items())]
    seen = set(docs)
    docs += docstrings(Path(sysconfig.get_paths()["stdlib"]), seen)
    for name in packages:
        module = __import__(name)
        root = Path(module.__file__).parent
        docs += docstrings(root, seen, SKIP - {"site-packages"})
    return docs


def main() -> None:
    args = sys.argv[1:]
    large = "--large" in args
    args = [a for a in args if a != "--large"]
    default = "docs_large.txt.xz" if large else "python_docs.txt"
    out = Path(args[0]) if args else Path(__file__).with_name(default)
    docs = documents(PACKAGES if large else ())
    random.Random(0).shuffle(docs)
    data = ("\n\n".join(docs) + "\n").encode("utf-8")
    out.write_bytes(lzma.compress(data, preset=9) if out.suffix == ".xz" else data)
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PACKAGES) if large else ""
    print(f"{out}: {len(docs)} documents, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}, "
          f"Python {sys.version.split()[0]}" + (f", {versions}" if versions else ""))


if __name__ == "__main__":
    main()

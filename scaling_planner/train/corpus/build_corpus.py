"""Rebuild ``python_docs.txt`` from the running Python's own documentation (no network).

Documents: every entry of ``pydoc_data.topics.topics`` (the language-reference sections that
``help()`` shows) and every distinct docstring of 40+ characters of the standard-library modules,
classes and functions (test suites, idlelib, lib2to3 and site-packages left out). The documents are
shuffled with ``random.Random(0)`` so that the last 10% of the file (the validation split of
:class:`scaling_planner.train.data.Corpus`) is a random sample of documents, and joined with a blank
line. The output depends on the Python version; README.md records the one used.

    python scaling_planner/train/corpus/build_corpus.py [OUT]
"""

from __future__ import annotations

import ast
import hashlib
import random
import sys
import sysconfig
from pathlib import Path

SKIP = {"test", "tests", "idlelib", "lib2to3", "site-packages", "pydoc_data", "turtledemo"}


def documents() -> list[str]:
    from pydoc_data.topics import topics

    docs = [text.strip() for _, text in sorted(topics.items())]
    root = Path(sysconfig.get_paths()["stdlib"])
    seen = set(docs)
    for path in sorted(root.rglob("*.py")):
        if SKIP.intersection(path.relative_to(root).parts):
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
                    docs.append(doc)
    return docs


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("python_docs.txt")
    docs = documents()
    random.Random(0).shuffle(docs)
    data = ("\n\n".join(docs) + "\n").encode("utf-8")
    out.write_bytes(data)
    print(f"{out}: {len(docs)} documents, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}, "
          f"Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()

"""English prose that ships with CPython: the ``pydocs`` text corpus, no download.

Two sources, both part of every CPython installation and fixed per Python version:

* the reference manual's topics, ``pydoc_data.topics.topics`` (what ``help('if')``
  prints; 79 topics, ~465k characters on 3.11): one document each, by name;
* the standard library's docstrings: for every ``.py`` file under
  ``sysconfig.get_paths()['stdlib']`` (walked in sorted order), its module, class
  and function docstrings (``ast.get_docstring``, cleaned of indentation) in
  source order, joined by blank lines: one document per file (~600 files, ~1.6M
  characters on 3.11).

Left out: ``site-packages`` / ``dist-packages`` (not the standard library),
``config-*`` build folders, and every folder named ``test``, ``tests`` or
``idle_test`` (distributions often strip the test suite, so the corpus must not
depend on it). A distribution that leaves out other modules (tkinter,
ensurepip) changes the corpus: ``info['sha256']`` names the exact text.

Parsing ~600 files takes a few seconds; the documents are cached as JSON in
``data.cache_dir``, keyed by the Python version and the stdlib's path.
"""

import ast
import hashlib
import json
import os
import platform
import sysconfig
import uuid
import warnings

from absl import logging

_VERSION = 1  # bump when what is extracted changes
_SKIP_DIRS = ("test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__")


def topic_documents() -> list[str]:
  """The reference manual's topics, sorted by name."""
  from pydoc_data.topics import topics  # pylint: disable=import-outside-toplevel

  return [topics[k].strip("\n") for k in sorted(topics)]


def docstrings(source: bytes) -> str:
  """A module's docstrings (module, classes, functions) in source order, blank-line joined;
  '' when it has none or does not parse."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # invalid escape sequences in old modules
      tree = ast.parse(source)
  except (SyntaxError, ValueError):
    return ""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      doc = ast.get_docstring(node)
      if doc and doc.strip():
        found.append((getattr(node, "lineno", 0), doc.strip()))
  return "\n\n".join(doc for _, doc in sorted(found, key=lambda x: x[0]))


def stdlib_files(root: str | None = None) -> list[str]:
  """The standard library's ``.py`` files, sorted, without tests and site-packages."""
  root = root or sysconfig.get_paths()["stdlib"]
  out = []
  for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("config-"))
    out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py")]
  return sorted(out)


def extract(root: str | None = None) -> list[str]:
  """All documents: the topics, then one per stdlib file that has docstrings."""
  docs = topic_documents()
  for path in stdlib_files(root):
    with open(path, "rb") as f:
      text = docstrings(f.read())
    if text:
      docs.append(text)
  return docs


def documents(cache_dir: str | None) -> tuple[list[str], dict]:
  """``(documents, info)``, from the cache when it holds this Python's corpus.

  ``info``: ``python`` (version), ``documents``, ``characters``, ``sha256`` of the
  documents joined by NUL.
  """
  root = sysconfig.get_paths()["stdlib"]
  version = platform.python_version()
  key = hashlib.sha1(f"{version}|{root}|{_VERSION}".encode()).hexdigest()[:16]
  path = os.path.join(os.path.expanduser(cache_dir), f"pydocs-{key}.json") if cache_dir else None
  docs = None
  if path and os.path.isfile(path):
    try:
      with open(path, encoding="utf-8") as f:
        docs = json.load(f)
    except (OSError, ValueError):
      logging.warning("ignoring the damaged cache entry %s", path)
  if docs is None:
    logging.info(
      "pydocs: reading the docstrings of Python %s's standard library (%s)", version, root
    )
    docs = extract(root)
    if path:
      _write_atomic(path, docs)
  digest = hashlib.sha256("\0".join(docs).encode("utf-8")).hexdigest()
  return docs, dict(
    corpus=f"CPython {version} reference topics and stdlib docstrings",
    python=version,
    documents=len(docs),
    characters=sum(len(d) for d in docs),
    sha256=digest,
  )


def _write_atomic(path: str, docs: list[str]) -> None:
  tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(docs, f)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("could not cache the pydocs corpus in %s: %s", path, e)
    if os.path.exists(tmp):
      os.remove(tmp)

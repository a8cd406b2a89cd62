"""The package layout is the architecture: library floors below, programs above.

Floors, lowest first: ``ssm`` < ``model`` < ``pruning`` < ``data`` < ``train`` < ``export``
< ``sweeps`` < ``bench`` / ``cli``. A module may import its own floor and the floors
below it, never one above; no two modules import each other, directly or around a circle.
Imports inside functions count too (a lazy import is still a dependency).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "last_nnx"
# Each floor may import the floors listed before it. `bench` and `cli` are both programs:
# the benchmarks use the command line's one-line errors.
FLOORS = ["ssm", "model", "pruning", "data", "train", "export", "sweeps", "bench", "cli"]
SAME_LEVEL = {("bench", "cli")}
MAX_LINES = 400


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
  """Dotted last_nnx modules (or names in them) this file imports, anywhere in it."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out.add(node.module)
      out.update(f"{node.module}.{a.name}" for a in node.names)
    elif isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
  return {m for m in out if m.startswith("last_nnx")}


def _graph() -> dict[str, set[str]]:
  files = {_module_name(p): p for p in ROOT.rglob("*.py")}
  graph = {}
  for name, path in files.items():
    deps = set()
    for target in _imports(path):
      while target not in files and "." in target:  # a name inside a module
        target = target.rsplit(".", 1)[0]
      if target in files and target != name and not name.startswith(target + "."):
        deps.add(target)
    graph[name] = deps
  return graph


def _floor(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 and parts[1] in FLOORS else None


def test_no_import_circles():
  graph = _graph()
  index, low, stack, on_stack, circles = {}, {}, [], set(), []

  def visit(v):  # Tarjan's strongly connected components
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
        if w == v:
          break
      if len(component) > 1:
        circles.append(sorted(component))

  for v in graph:
    if v not in index:
      visit(v)
  assert not circles, f"import circles: {circles}"


def test_no_upward_imports():
  upward = []
  for module, deps in _graph().items():
    here = _floor(module)
    if here is None:
      continue
    for dep in deps:
      there = _floor(dep)
      if there is None or (here, there) in SAME_LEVEL:
        continue
      if FLOORS.index(there) > FLOORS.index(here):
        upward.append(f"{module} -> {dep}")
  assert not upward, f"imports from a floor above: {upward}"


def test_top_level_holds_only_the_library_entry_points():
  top = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
  assert top == {"model", "export"}, sorted(top)


def test_every_program_of_the_installed_command_exists():
  from last_nnx.cli import main

  for module, _ in main.PROGRAMS.values():
    path = ROOT.parent / module.replace(".", "/")
    assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_past_the_size_limit(path):
  lines = len(path.read_text().splitlines())
  assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by concern"

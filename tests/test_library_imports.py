"""The library does not import the application.

The library (docs/design.md's map): the top level of `vib_flows`, i.e.
`vib_flows` itself, `flows`, `distributions`, `objectives`, `networks`,
`models`, `optimizers`, `fields`, `indexed_noise`, `quadrature`,
`synthetic_truth`, `training_step`, `gated_conv`, `adversarial`, `fit_settings`
and `registry`. It takes plain arguments; the application uses it, never the
other way round: `vib_flows.app` (the command line, training, checkpoints,
evaluation, export, the config, the run directory, pictures, summaries, the
model builder that reads the config), `vib_flows.data` (which reads the
config and imports `vib_flows.app.faults` and `vib_flows.app.model_builder`),
the launcher `vib_flows.main`, the deprecated aliases `vib_flows.export`,
`vib_flows.serving` and `vib_flows.config_files`, and the experiments.
Someone reusing a flow layer needs TensorFlow, TFP and Keras only.

Three checks: every import statement of every library file (at module level
or inside a function) names a library module (fast, by AST); the modules of
vib_flows, library and application, import each other without a cycle (by
AST too); and a fresh process where the application's third-party packages
cannot be imported (as if they were not installed) still imports every
library module and loads no application module. Keras itself imports
matplotlib and scikit-learn when they are installed and skips them when not,
so that test hides them rather than looking for them in `sys.modules`.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

from tests import helpers

PACKAGE = pathlib.Path(helpers.ROOT) / "vib_flows"
LIBRARY_MODULES = (
    "vib_flows", "vib_flows.flows", "vib_flows.distributions",
    "vib_flows.objectives", "vib_flows.networks", "vib_flows.models",
    "vib_flows.optimizers", "vib_flows.fields", "vib_flows.indexed_noise",
    "vib_flows.quadrature", "vib_flows.synthetic_truth",
    "vib_flows.training_step", "vib_flows.gated_conv",
    "vib_flows.adversarial", "vib_flows.registry",
    "vib_flows.fit_settings")
APPLICATION_MODULES = (
    "vib_flows.app", "vib_flows.data", "vib_flows.main", "vib_flows.export",
    "vib_flows.serving", "vib_flows.config_files", "experiments")
APPLICATION_PACKAGES = ("matplotlib", "tensorflow_datasets", "sklearn",
                        "tensorflow_serving", "ml_collections")


def _is_in(name, modules):
  return any(name == m or name.startswith(m + ".") for m in modules)


def _module_of(path):
  """The dotted module name of a file under vib_flows/."""
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_files():
  files = []
  for path in sorted(PACKAGE.rglob("*.py")):
    module = _module_of(path)
    if module == "vib_flows" or _is_in(module, LIBRARY_MODULES[1:]):
      files.append((path, module))
  return files


def _is_type_checking(node):
  """Whether `node` is `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
  test = getattr(node, "test", None)
  return isinstance(node, ast.If) and (
      getattr(test, "id", None) == "TYPE_CHECKING"
      or getattr(test, "attr", None) == "TYPE_CHECKING")


def _imports(path, module, type_checking=True):
  """The modules a file imports: statements and import_module("...").

  Args:
    path: the file.
    module: its dotted module name (resolves relative imports).
    type_checking: include the imports under `if TYPE_CHECKING:`, which
      the type checker reads and the interpreter never runs.

  Returns:
    (imported name, line) pairs, in the order of `ast.walk`.
  """
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  tree = ast.parse(path.read_text(), str(path))
  skipped = set()
  if not type_checking:
    for node in ast.walk(tree):
      if _is_type_checking(node):
        skipped |= {id(n) for n in ast.walk(node)}
  return [(name, node.lineno) for node in ast.walk(tree)
          if id(node) not in skipped
          for name in _imports_of(node, package)]


def _imports_of(node, package):
  """The modules one AST node imports ([] for other nodes)."""
  if isinstance(node, ast.Import):
    return [alias.name for alias in node.names]
  if isinstance(node, ast.ImportFrom):
    base = node.module or ""
    if node.level:
      parent = package.split(".")
      parent = parent[:len(parent) - node.level + 1]
      base = ".".join(parent + ([base] if base else []))
    # `from vib_flows import data` imports the module vib_flows.data.
    return [f"{base}.{alias.name}" for alias in node.names]
  if (isinstance(node, ast.Call)
      and getattr(node.func, "attr", None) == "import_module"
      and node.args and isinstance(node.args[0], ast.Constant)):
    return [node.args[0].value]
  return []


def test_the_library_is_the_modules_of_the_map():
  found = {module for _, module in _library_files()}
  assert set(LIBRARY_MODULES) <= found
  assert {"vib_flows.flows.planar", "vib_flows.distributions.priors"} <= found


def test_every_module_is_library_or_application():
  unclassified = sorted(
      module for module in map(_module_of, PACKAGE.rglob("*.py"))
      if module != "vib_flows" and not _is_in(module, LIBRARY_MODULES[1:])
      and not _is_in(module, APPLICATION_MODULES))
  assert not unclassified, unclassified


def test_library_modules_import_only_the_library():
  wrong = []
  for path, module in _library_files():
    relative = str(path.relative_to(PACKAGE.parent))
    for name, _ in _imports(path, module):
      if not _is_in(name, ("vib_flows", "experiments")):
        continue  # Third-party and standard library.
      if _is_in(name, APPLICATION_MODULES) or not _is_in(
          name, LIBRARY_MODULES[1:]) and name != "vib_flows":
        wrong.append(f"{relative} imports {name}")
  assert not wrong, "\n".join(wrong)


def test_the_import_check_sees_imports_inside_functions(tmp_path):
  source = tmp_path / "networks.py"
  source.write_text(
      "def f():\n  from vib_flows.data import synthetic\n"
      "  from .app import model_builder\n"
      "  importlib.import_module('vib_flows.app.modes')\n")
  assert [name for name, _ in _imports(source, "vib_flows.networks")] == [
      "vib_flows.data.synthetic", "vib_flows.app.model_builder",
      "vib_flows.app.modes"]


def _import_graph():
  """vib_flows module -> {vib_flows module it imports: file:line}.

  Every import statement and import_module("...") counts, at module level or
  inside a function, but those under `if TYPE_CHECKING:` (never run). An
  imported name is resolved to the longest module it starts with
  (`from vib_flows.flows.registry import get` -> vib_flows.flows.registry);
  the parent packages an import loads on the way are not edges, or every
  package's `__init__` that imports its own modules would be a cycle.
  """
  files = {_module_of(path): path for path in sorted(PACKAGE.rglob("*.py"))}
  graph = {}
  for module, path in files.items():
    edges = {}
    for name, line in _imports(path, module, type_checking=False):
      while name and name not in files:
        name = name.rpartition(".")[0]
      if name and name != module:
        edges.setdefault(
            name, f"{path.relative_to(PACKAGE.parent)}:{line}")
    graph[module] = edges
  return graph


def _find_cycle(graph):
  """A cycle of `graph` as its list of nodes, first = last; None if acyclic."""
  done, path = set(), []

  def visit(node):
    path.append(node)
    for target in sorted(graph.get(node, ())):
      if target in path:
        return path[path.index(target):] + [target]
      if target not in done:
        cycle = visit(target)
        if cycle:
          return cycle
    path.pop()
    done.add(node)
    return None

  for node in sorted(graph):
    if node not in done:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def _chain(graph, cycle):
  """A cycle as text: one import a line, "a imports b (file:line)"."""
  return "\n".join(f"  {a} imports {b} ({graph[a][b]})"
                   for a, b in zip(cycle, cycle[1:]))


def test_the_cycle_search_finds_a_cycle_as_a_chain():
  graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2"},
           "c": {"b": "c.py:3"}, "d": {"a": "d.py:4"}}
  cycle = _find_cycle(graph)
  assert cycle == ["b", "c", "b"]
  assert _chain(graph, cycle) == (
      "  b imports c (b.py:2)\n  c imports b (c.py:3)")
  assert _find_cycle({"a": {"b": ""}, "b": {}, "c": {"a": ""}}) is None


def test_the_modules_of_vib_flows_import_each_other_without_cycles():
  graph = _import_graph()
  assert {"vib_flows.flows.registry", "vib_flows.models",
          "vib_flows.app.model_builder", "vib_flows.app.modes"} <= set(graph)
  assert "vib_flows.flows.base" in graph["vib_flows.flows.registry"]
  cycle = _find_cycle(graph)
  assert cycle is None, "Import cycle:\n" + _chain(graph, cycle)


_CHILD = f"""
import importlib, sys
for name in {APPLICATION_PACKAGES!r}:
  sys.modules[name] = None  # `import name` now raises ImportError.
for name in {LIBRARY_MODULES!r}:
  importlib.import_module(name)
application = {APPLICATION_MODULES!r}
loaded = sorted(m for m in sys.modules if sys.modules[m] is not None and any(
    m == a or m.startswith(a + ".") for a in application))
print("APPLICATION MODULES LOADED:", loaded)
assert not loaded, loaded
"""


@pytest.mark.slow  # A fresh process imports TensorFlow: 15-30 s here.
def test_library_imports_without_the_application_packages():
  result = subprocess.run(
      [sys.executable, "-c", _CHILD], env=helpers.env(), capture_output=True,
      text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]

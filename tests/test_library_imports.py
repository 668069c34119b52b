"""The library does not import the application.

The library (docs/design.md's map): `vib_flows` itself, `flows`,
`distributions`, `objectives`, `networks`, `models`, `optimizers`, `fields`,
`indexed_noise`, `quadrature`, `synthetic_truth` and `training_step`. It
takes plain arguments; the application (data, training, checkpoints,
evaluation, export, the command line, configs, the run directory, pictures,
summaries, the model builder that reads the config, and the experiments) uses
it, never the other way round. Someone reusing a flow layer needs
TensorFlow, TFP and Keras only.

Two checks: every import statement of every library file (at module level or
inside a function) names a library module (fast, by AST); and a fresh process
where the application's third-party packages cannot be imported (as if they
were not installed) still imports every library module and loads no
application module. Keras itself imports matplotlib and scikit-learn when they
are installed and skips them when not, so that test hides them rather than
looking for them in `sys.modules`.
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
    "vib_flows.adversarial")
APPLICATION_MODULES = (
    "vib_flows.data", "vib_flows.train", "vib_flows.train_loop",
    "vib_flows.checkpoints", "vib_flows.faults", "vib_flows.evaluate",
    "vib_flows.export", "vib_flows.serving",
    "vib_flows.main", "vib_flows.config_checks", "vib_flows.config_files",
    "vib_flows.distribute", "vib_flows.workdir", "vib_flows.plots",
    "vib_flows.summaries", "vib_flows.model_builder", "vib_flows.limits",
    "vib_flows.phases", "experiments")
APPLICATION_PACKAGES = ("matplotlib", "tensorflow_datasets", "sklearn",
                        "tensorflow_serving", "ml_collections")
# (file, module): the deprecated aliases `models.build_model` and
# `models.flow_kwargs` load the builder when first used, in the module's
# `__getattr__` (only there), never on import. Remove with the aliases.
DEPRECATED_ALIASES = {
    ("vib_flows/models/__init__.py", "vib_flows.model_builder")}


def _is_in(name, modules):
  return any(name == m or name.startswith(m + ".") for m in modules)


def _library_files():
  files = []
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    if module == "vib_flows" or _is_in(module, LIBRARY_MODULES[1:]):
      files.append((path, module))
  return files


def _imports(path, module, aliases=()):
  """The modules a file imports: statements and import_module("...").

  Imports of `aliases` inside a module-level `__getattr__` are left out.
  """
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  tree = ast.parse(path.read_text(), str(path))
  in_getattr = set()
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
      in_getattr |= {id(n) for n in ast.walk(node)}
  names = []
  for node in ast.walk(tree):
    found = _imports_of(node, package)
    if id(node) in in_getattr and found and set(found) <= set(aliases):
      continue
    names += found
  return names


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


def test_library_modules_import_only_the_library():
  wrong = []
  for path, module in _library_files():
    relative = str(path.relative_to(PACKAGE.parent))
    aliases = [m for f, m in DEPRECATED_ALIASES if f == relative]
    for name in _imports(path, module, aliases):
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
      "  from . import model_builder\n"
      "  importlib.import_module('vib_flows.train')\n")
  assert _imports(source, "vib_flows.networks") == [
      "vib_flows.data.synthetic", "vib_flows.model_builder",
      "vib_flows.train"]


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

"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs alone in a fresh Python process, in an empty directory (a
block that saves a file writes it there), and must exit with status 0. A block
preceded by an HTML comment line is treated as that line says:

    <!-- skip-test: REASON -->   not run here, for the stated REASON
                                  (e.g. it needs a GPU or a download);
    <!-- slow-test -->            run with the slow tests (@pytest.mark.slow).

Blocks of other languages (sh, json, text) are not run.
"""

import dataclasses
import glob
import os
import re
import sys

import pytest

from tests import helpers
from tests import warm_processes

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(skip-test|slow-test)\s*(?::\s*(.*?))?\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
  path: str  # Relative to the repository root.
  line: int  # Line of the opening fence.
  code: str
  marker: str | None  # "skip-test", "slow-test" or None.
  reason: str

  @property
  def name(self) -> str:
    return f"{self.path}:{self.line}"


def doc_files() -> list[str]:
  files = [os.path.join(helpers.ROOT, "README.md")]
  files += sorted(glob.glob(os.path.join(helpers.ROOT, "docs", "*.md")))
  return files


def python_blocks(text: str, path: str) -> list[Block]:
  """The ```python blocks of `text`, with the marker on the line above."""
  blocks = []
  for match in _FENCE.finditer(text):
    line = text.count("\n", 0, match.start()) + 1
    before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
    marker = _MARKER.search(before)
    blocks.append(Block(path, line, match.group(1),
                        marker.group(1) if marker else None,
                        (marker.group(2) or "") if marker else ""))
  return blocks


def all_blocks() -> list[Block]:
  blocks = []
  for file in doc_files():
    with open(file, encoding="utf-8") as f:
      blocks += python_blocks(f.read(), os.path.relpath(file, helpers.ROOT))
  return blocks


def _params():
  params = []
  for block in all_blocks():
    marks = []
    if block.marker == "skip-test":
      marks.append(pytest.mark.skip(reason=block.reason))
    elif block.marker == "slow-test":
      marks.append(pytest.mark.slow)
    params.append(pytest.param(block, id=block.name, marks=marks))
  return params


@pytest.mark.parametrize("block", _params())
def test_doc_example_runs(block, tmp_path):
  script = tmp_path / "example.py"
  script.write_text(block.code, encoding="utf-8")
  run = warm_processes.run(
      [sys.executable, str(script)], cwd=tmp_path, env=helpers.env(),
      capture_output=True, text=True, timeout=600,
  )
  assert run.returncode == 0, (
      f"The example at {block.name} failed:\n{run.stderr[-4000:]}")


def test_there_are_examples_and_every_skip_says_why():
  blocks = all_blocks()
  assert any(b.path == "README.md" for b in blocks)
  for block in blocks:
    if block.marker == "skip-test":
      assert block.reason, f"{block.name}: skip-test needs a reason"


def test_the_extraction_reads_fences_and_markers():
  text = (
      "intro\n```python\nprint(1)\n```\n"
      "<!-- skip-test: needs a GPU -->\n```python\nimport gpu\n```\n"
      "```sh\nls\n```\n"
      "<!-- slow-test -->\n```python\nprint(3)\n```\n"
  )
  blocks = python_blocks(text, "x.md")
  assert [(b.line, b.code, b.marker, b.reason) for b in blocks] == [
      (2, "print(1)\n", None, ""),
      (6, "import gpu\n", "skip-test", "needs a GPU"),
      (13, "print(3)\n", "slow-test", ""),
  ]

"""The public API (names and signatures) against its snapshot.

tests/public_api.py collects the API in a fresh process (flows registered by
other tests and import order cannot change it) and tests/public_api.json is
the snapshot. An intended change: regenerate the snapshot with the command
the failure prints, and add its line to CHANGELOG.md.
"""

import difflib
import json
import os
import re
import sys

from tests import helpers
from tests import public_api
from tests import warm_processes


def collected_api():
  run = warm_processes.run(
      [sys.executable, "-m", "tests.public_api"], cwd=public_api.ROOT,
      env=helpers.env(), capture_output=True, text=True, timeout=300,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(run.stdout)


def test_public_api_matches_the_snapshot():
  with open(public_api.SNAPSHOT, encoding="utf-8") as f:
    snapshot = json.load(f)
  api = collected_api()
  if api != snapshot:
    diff = "".join(difflib.unified_diff(
        public_api.dumps(snapshot).splitlines(keepends=True),
        public_api.dumps(api).splitlines(keepends=True),
        "tests/public_api.json (snapshot)", "the code (collected)", n=2))
    raise AssertionError(
        "The public API differs from its snapshot tests/public_api.json.\n"
        "If the change is intended, regenerate the snapshot with\n"
        f"    {public_api.UPDATE_COMMAND}\n"
        "and add a line to CHANGELOG.md (## [Unreleased]).\n" + diff[:6000])


def test_the_snapshot_covers_every_public_module():
  with open(public_api.SNAPSHOT, encoding="utf-8") as f:
    snapshot = json.load(f)
  for module in ("vib_flows.flows", *public_api.MODULES):
    assert snapshot.get(module), f"{module} is missing from the snapshot"
  assert snapshot["flow classes (vib_flows.flows.names())"]
  assert "flow.name" in snapshot["config fields (configs/default.py)"]


def test_the_version_has_its_changelog_section():
  import vib_flows  # pylint: disable=import-outside-toplevel

  version = vib_flows.__version__
  assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
  with open(os.path.join(public_api.ROOT, "CHANGELOG.md"),
            encoding="utf-8") as f:
    changelog = f.read()
  assert "## [Unreleased]" in changelog
  assert f"## [{version}]" in changelog, (
      f"CHANGELOG.md has no section for version {version}")

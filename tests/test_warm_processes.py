"""Warm-started test processes behave as fresh `python` processes.

The end-to-end tests start their command lines through
tests/warm_processes.py (forked from an interpreter that has imported
TensorFlow and the package). This compares a warm child with a fresh one on
what a command line sees: its arguments, working directory, environment,
`sys.path[0]`, `__name__`, stdin, exit status, and death by signal.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from tests import helpers
from tests import warm_processes

_PROBE = textwrap.dedent("""\
    import json, os, sys
    print(json.dumps({
        "argv": sys.argv[1:], "cwd": os.getcwd(),
        "probe": os.environ.get("WARM_PROBE"), "path0": sys.path[0],
        "name": __name__, "stdin": sys.stdin.read(),
        "tty": sys.stderr.isatty()}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
    """)


def _probe(runner, tmp_path):
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  env = dict(helpers.env(), WARM_PROBE="yes")
  return runner([sys.executable, str(script), "3", "--flag=x"],
                cwd=str(tmp_path), env=env, capture_output=True, text=True,
                timeout=120)


def test_a_warm_child_sees_what_a_fresh_process_sees(tmp_path):
  warm = _probe(warm_processes.run, tmp_path)
  fresh = _probe(subprocess.run, tmp_path)
  assert warm.returncode == fresh.returncode == 3, warm.stderr[-2000:]
  assert json.loads(warm.stdout) == json.loads(fresh.stdout)
  assert warm.stderr.strip().endswith("to stderr")
  assert isinstance(warm_processes.popen(
      [sys.executable, "-c", "pass"]), subprocess.Popen)  # -c: fresh.


def test_a_signal_ends_a_warm_child_as_it_ends_a_fresh_one(tmp_path):
  script = tmp_path / "sleep.py"
  script.write_text("import sys, time\nprint('up', flush=True)\n"
                    "time.sleep(60)\n")
  proc = warm_processes.popen([sys.executable, str(script)], cwd=str(tmp_path),
                              env=helpers.env(), stdout=subprocess.PIPE,
                              text=True)
  assert isinstance(proc, warm_processes.WarmProcess)
  assert proc.stdout.readline() == "up\n"
  assert proc.poll() is None
  start = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=30) == -signal.SIGTERM
  assert time.monotonic() - start < 10
  proc.stdout.close()
  # The pid was the child's own: nothing answers on it any more.
  try:
    os.kill(proc.pid, 0)
  except ProcessLookupError:
    pass
  else:
    raise AssertionError(f"process {proc.pid} is still alive")


def test_a_script_that_chooses_its_backend_runs_fresh(tmp_path):
  script = tmp_path / "backend.py"
  script.write_text("import os\nos.environ['KERAS_BACKEND'] = 'jax'\n")
  proc = warm_processes.popen([sys.executable, str(script)], cwd=str(tmp_path),
                              env=helpers.env())
  assert isinstance(proc, subprocess.Popen)
  assert proc.wait(timeout=120) == 0

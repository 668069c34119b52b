"""The workdir (`vib_flows.app.workdir`): its lock, atomic files, its run.

One live process per workdir (a dead holder's lock is taken over), JSON
files replaced atomically, and a workdir of another run refused.
"""

import json
import os
import re
import signal
import socket
import time

import pytest

from tests import helpers
from tests import warm_processes
from vib_flows.app import faults
from vib_flows.app import modes
from vib_flows.app import workdir as workdir_lib


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
  path = tmp_path / "metrics.json"
  workdir_lib.write_json_atomic(str(path), {"a": 1})
  with pytest.raises(TypeError):
    workdir_lib.write_json_atomic(str(path), {"a": object()})
  assert json.loads(path.read_text()) == {"a": 1}
  assert os.listdir(tmp_path) == ["metrics.json"]


def test_workdir_lock_refuses_a_second_holder_and_ignores_a_dead_ones(
    tmp_path, caplog):
  workdir = str(tmp_path)
  lock_path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  host = socket.gethostname()
  with workdir_lib.lock(workdir):
    holder = helpers.read_json(lock_path)
    assert (holder["host"], holder["pid"]) == (host, os.getpid())
    # A second open of the file is a second holder, even in this process.
    with pytest.raises(faults.WorkdirLockedError,
                       match=rf"in use by process {os.getpid()} on host "
                       rf"{re.escape(host)} .*{re.escape(lock_path)} is "
                       "locked"):
      with workdir_lib.lock(workdir):
        pass
  # A record of a process that holds nothing: the pid is alive (pid reuse:
  # pid 1 runs) and on this host, but the record alone does not lock.
  with open(lock_path, "w") as f:
    json.dump({"host": host, "pid": 1, "started": "then"}, f)
  with workdir_lib.lock(workdir):
    assert helpers.read_json(lock_path)["pid"] == os.getpid()
  assert f"Took over {lock_path} from process 1 on host {host}" in caplog.text


@pytest.mark.slow
def test_second_process_on_a_workdir_is_refused_until_the_first_dies(
    tmp_path):
  workdir = str(tmp_path / "run")
  lock_path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  first = helpers.start(
      helpers.main_command(workdir, "--config.train.num_epochs=500"))
  try:
    deadline = time.time() + 300
    while not (os.path.exists(lock_path) and os.path.getsize(lock_path)):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.time() < deadline
      time.sleep(0.05)
    second = warm_processes.run(
        helpers.main_command(workdir, "--config.train.num_epochs=500"),
        cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
        timeout=300)
    assert first.poll() is None, "the first run ended too early"
    assert second.returncode == faults.EXIT_WORKDIR_LOCKED, (
        second.stderr[-3000:])
    assert "Traceback" not in second.stderr
    assert re.search(
        rf"Workdir {re.escape(workdir)} is in use by process {first.pid} on "
        rf"host {re.escape(socket.gethostname())} ",
        helpers.last_line(second.stderr)), second.stderr[-3000:]
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert helpers.read_json(lock_path)["pid"] == first.pid  # Left behind.
  third = warm_processes.run(
      helpers.main_command(workdir, "--config.train.num_epochs=1"),
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f"from process {first.pid} on host" in third.stderr


def test_other_config_in_same_workdir_is_refused(tmp_path):
  config = helpers.run_config()
  workdir_lib.prepare(str(tmp_path), config)  # A run's start: config.json.
  other = helpers.run_config()
  other.model.latent_dim = 3
  with pytest.raises(faults.ConfigError,
                     match=r"different config: model.latent_dim \(4 in the "
                     r"run, 3 here\)"):
    modes.train_and_evaluate(other, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["config.json"]  # No lock left.
  other.train.overwrite = True
  other.train.num_epochs = 1
  other.eval.num_importance_samples = 2
  other.eval.importance_chunk_size = 2
  modes.train_and_evaluate(other, str(tmp_path))
  assert helpers.read_json(tmp_path / "config.json")["model"]["latent_dim"] == 3


def test_with_absent_defaults_fills_only_fields_a_config_predates():
  old = {"data": {"name": "digits"}, "seed": 0}
  filled = workdir_lib.with_absent_defaults(old)
  assert filled == {"data": {"name": "digits", "num_classes": 0}, "seed": 0}
  assert old == {"data": {"name": "digits"}, "seed": 0}  # not changed
  newer = {"data": {"name": "digits", "num_classes": 10}}
  assert workdir_lib.with_absent_defaults(newer) == newer

"""Whole runs as processes: signals, kills and several workers.

`python -m vib_flows.main` processes of configs/test.py (`helpers.main_command`,
60 steps): SIGTERM to one of two localhost workers, a run killed and resumed
four times, and two workers of the multi-worker strategy; each resumed run
ends as the uninterrupted one.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import warm_processes
from vib_flows.app import faults


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The workdir of `helpers.main_command`'s run, never interrupted."""
  clean = str(tmp_path_factory.mktemp("uninterrupted"))
  warm_processes.run(
      helpers.main_command(clean), cwd=helpers.ROOT, env=helpers.env(),
      check=True, capture_output=True, timeout=600,
  )
  return clean


def _wait_for_checkpoint(procs, workdir, step, timeout=300):
  """Waits until `workdir` holds a checkpoint of `step` or later."""
  deadline = time.time() + timeout
  while helpers.checkpoint_step(workdir) < step:
    for proc in procs:
      assert proc.poll() is None, (
          f"the run ended before step {step}: {proc.stderr.read()[-3000:]}")
    assert time.time() < deadline, f"no checkpoint of step {step} in time"
    time.sleep(0.02)


def _finish(proc, timeout=300):
  """(exit status, stderr) of `proc`, killed if it outlives `timeout`."""
  try:
    _, err = proc.communicate(timeout=timeout)
  finally:
    proc.kill()
  return proc.returncode, err


def _stopped_step(stderr, line=helpers.last_line):
  """The step named by the preemption message on stderr (`line` of it)."""
  match = re.search(r"Stopped by SIGTERM after step (\d+); checkpoint "
                    r"\S+ckpt-(\d+) written\. Run the same command again",
                    line(stderr))
  assert match and match[1] == match[2], stderr[-3000:]
  return int(match[1])


def _local_cluster(num_workers):
  """A TF_CONFIG cluster of `num_workers` workers on free localhost ports."""
  return {"worker": [f"localhost:{p}" for p in helpers.free_ports(num_workers)]}


def _worker_env(cluster, index):
  return {"TF_CONFIG": json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": index}})}


def _run_two_workers(workdir, cluster, signal_worker=None):
  """Runs the main command on two workers; SIGTERM to one after step 15.

  Returns:
    [(exit status, stderr)] of the two workers.
  """
  command = helpers.main_command(
      workdir, "--config.runtime.strategy=multi_worker_mirrored",
      "--config.train.steps_per_call=2", "--config.export.enabled=True",
      f"--config.export.base_dir={workdir}_exports")
  procs = [helpers.start(command, _worker_env(cluster, index))
           for index in range(2)]
  try:
    if signal_worker is not None:
      _wait_for_checkpoint(procs, workdir, 15)
      procs[signal_worker].send_signal(signal.SIGTERM)
    return [_finish(proc) for proc in procs]
  finally:
    for proc in procs:
      proc.kill()


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_all_at_one_checkpoint_and_resumes(
    tmp_path):
  """Two localhost workers; the non-chief gets the signal; both resume."""
  cluster = _local_cluster(2)
  workdir, clean = str(tmp_path / "run"), str(tmp_path / "clean")
  results = _run_two_workers(workdir, cluster, signal_worker=1)
  for code, err in results:
    assert code == faults.EXIT_PREEMPTED, err[-3000:]
    assert "Traceback" not in err
  # The worker's message may be followed by TensorFlow's log of a heartbeat
  # to the chief that has already exited (`helpers.last_message`).
  stopped = _stopped_step(results[1][1], helpers.last_message)
  assert 15 <= stopped < 60 and helpers.checkpoint_step(workdir) == stopped
  assert re.search(rf"Stopped because another worker received a stop "
                   rf"signal after step {stopped};",
                   helpers.last_message(results[0][1]))
  # The README's multi-worker command, resumed: every worker restores the
  # chief's checkpoint, exits 0, and the chief exports.
  for code, err in _run_two_workers(workdir, cluster):
    assert code == 0, err[-3000:]
    assert "Restored" in err and f"ckpt-{stopped}" in err, err[-3000:]
  assert helpers.read_json(os.path.join(workdir, "export.json"))["path"]
  assert not os.listdir(os.path.join(workdir, "worker_scratch"))
  for code, err in _run_two_workers(clean, cluster):
    assert code == 0, err[-3000:]
  metrics = helpers.read_json(os.path.join(workdir, "metrics.json"))
  assert metrics["step"] == 60 and metrics["steps_this_run"] == 60 - stopped
  helpers.assert_same_variables(workdir, clean)


@pytest.mark.slow
def test_soak_run_killed_and_resumed_four_times_equals_uninterrupted(
    tmp_path, uninterrupted):
  """SIGTERM and SIGKILL in turn, each a seeded random number of steps on.

  SIGTERM: status 75, no traceback, a checkpoint at the step it names.
  SIGKILL (mid-epoch: an epoch is 10 steps, checkpoints every 5): no
  metrics.json, the last checkpoint kept. The final run resumes from there
  and ends with every variable of the checkpoint (weights, best weights, Adam
  moments, counters) and the test metrics of the uninterrupted run, up to
  float rounding: same data order, same noise per step, restored optimizer
  state.
  """
  workdir = str(tmp_path / "run")
  rng = np.random.default_rng(20261204)
  last = 0
  for sig in (signal.SIGTERM, signal.SIGKILL) * 2:
    target = last + int(rng.integers(2, 9))  # Checkpoints every 5 steps.
    proc = helpers.start(helpers.main_command(
        workdir, "--config.train.steps_per_call=2"))
    _wait_for_checkpoint([proc], workdir, target)
    proc.send_signal(sig)
    code, err = _finish(proc)
    if sig == signal.SIGTERM:
      assert code == faults.EXIT_PREEMPTED, err[-3000:]
      assert "Traceback" not in err
      last = _stopped_step(err)
      assert helpers.checkpoint_step(workdir) == last
    else:
      assert code == -signal.SIGKILL
      last = helpers.checkpoint_step(workdir)
    assert target <= last < 60
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
  final = warm_processes.run(
      helpers.main_command(workdir), cwd=helpers.ROOT, env=helpers.env(),
      capture_output=True, text=True, timeout=600)
  assert final.returncode == 0, final.stderr[-3000:]
  got = helpers.read_json(os.path.join(workdir, "metrics.json"))
  want = helpers.read_json(os.path.join(uninterrupted, "metrics.json"))
  assert got["step"] == want["step"] == 60
  assert got["steps_this_run"] == 60 - last
  helpers.assert_same_variables(workdir, uninterrupted)
  for key in ("test_elbo", "test_log_likelihood", "test_kl"):
    assert got[key] == pytest.approx(want[key], rel=1e-5), key


def _run_workers(cluster, arguments):
  """Runs one Python process per worker, each with its TF_CONFIG.

  Args:
    cluster: the TF_CONFIG cluster.
    arguments: worker index -> the arguments after `python`.

  Returns:
    Each worker's stderr, after asserting that every worker exited 0.
  """
  procs = []
  for index in range(len(cluster["worker"])):
    child = helpers.env()
    child.update(_worker_env(cluster, index))
    procs.append(warm_processes.popen(
        [sys.executable, *arguments(index)], cwd=helpers.ROOT, env=child,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  results = []
  for proc in procs:
    try:
      _, err = proc.communicate(timeout=600)
    finally:
      proc.kill()
    results.append((proc.returncode, err))
  for index, (code, err) in enumerate(results):
    assert code == 0, f"worker {index}: {err[-4000:]}"
  return [err for _, err in results]


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes(tmp_path):
  _run_workers(_local_cluster(2), lambda index: [
      "tests/scripts/multi_worker.py", helpers.ROOT, str(tmp_path / "run"),
      str(tmp_path / f"w{index}.npz")])
  w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
  assert int(w0["step"]) == int(w1["step"]) == 2 * 10
  for key in w0.files:
    np.testing.assert_array_equal(w0[key], w1[key])
  # Only the chief (worker 0) wrote checkpoints into the workdir.
  assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))

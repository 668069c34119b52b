"""Command-line processes started from a warm interpreter, for the tests.

The end-to-end tests run the package's command lines as real processes:
`python -m vib_flows.main ...`, each with its own pid, arguments,
environment, working directory, pipes, signals and exit status. Most of the
cost of such a process is interpreter start-up: importing TensorFlow, Keras
and TFP takes several CPU seconds before `main` runs, and the suite starts
about a hundred of them.

`popen` and `run` start those processes by forking a server process that has
already imported the package and its dependencies (as Android's zygote or
multiprocessing's forkserver with preloading do). The forked child sets the
request's environment, working directory, standard streams and `sys.argv`,
then runs the module or script as `python -m` would (`runpy`, as
`__main__`) and ends through normal interpreter shutdown, so atexit
handlers, threads and exit statuses behave as in a fresh process.

What a fork cannot give, a fresh process is used for: another Python
executable, a `-c` command, or an environment that differs in what
TensorFlow and Keras read at import (`KERAS_BACKEND`, the log level,
oneDNN). The import of the package itself is covered by tests that always
start fresh interpreters: the install test and the README commands.

TensorFlow is fork-safe only before its runtime starts, so the server checks
that importing the package created no eager context, and a child is forked
from the single-threaded server loop.

Protocol: one Unix socket pair per test process. A request is a JSON object
(argv, env, cwd) sent with the child's stdin, stdout and stderr descriptors
(SCM_RIGHTS); the server answers {"pid"} and later {"exited", "returncode"}.
When the test process goes away the server kills its remaining children.
"""

import importlib
import json
import os
import pkgutil
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Read by TensorFlow, Keras or Python at import: a child whose value differs
# from the server's gets a fresh interpreter instead.
IMPORT_TIME_VARIABLES = (
    "KERAS_BACKEND", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL",
    "TF_CPP_MAX_VLOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "CUDA_VISIBLE_DEVICES",
    "PYTHONHASHSEED", "PYTHONWARNINGS", "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE", "TF_USE_LEGACY_KERAS",
)
# Modules that define absl flags when imported: a child imports them itself
# (as `__main__` or through it), so the server must not.
_FLAG_DEFINITIONS = ("flags.DEFINE", "config_flags.DEFINE")
_MAX_MESSAGE = 1 << 20


# ---------------------------------------------------------------- server ----


def _preload():
  """Imports TensorFlow, Keras, TFP and every package module without flags."""
  import vib_flows  # pylint: disable=g-import-not-at-top
  for info in pkgutil.walk_packages(vib_flows.__path__, "vib_flows."):
    path = os.path.join(ROOT, *info.name.split(".")) + (
        "/__init__.py" if info.ispkg else ".py")
    try:
      with open(path) as f:
        source = f.read()
    except OSError:
      continue
    if any(marker in source for marker in _FLAG_DEFINITIONS):
      continue
    if 'if __name__ == "__main__":' in source:
      continue  # An entry point (vib_flows.main imports the flags' module).
    if "DeprecationWarning" in source and "warnings.warn" in source and (
        not info.ispkg and source.count("\n") < 40):
      continue  # A deprecated alias module: importing it warns.
    importlib.import_module(info.name)
  from absl import flags  # pylint: disable=g-import-not-at-top
  defined = [m for m in flags.FLAGS.flags_by_module_dict()
             if m.startswith(("vib_flows", "experiments"))]
  if defined:
    raise RuntimeError(f"preloading defined the flags of {defined}: a child "
                       "running that module as __main__ would define them "
                       "twice")
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  if context.context()._context_handle is not None:  # pylint: disable=protected-access
    raise RuntimeError("importing the package started TensorFlow's runtime; "
                       "forked children could not configure devices")


def _child(request, fds):
  """In the forked child: becomes `python -m MODULE ARGS` and never returns."""
  for target, fd in zip((0, 1, 2), fds):
    os.dup2(fd, target)
    os.close(fd)
  signal.set_wakeup_fd(-1)
  signal.signal(signal.SIGCHLD, signal.SIG_DFL)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  os.environ.clear()
  os.environ.update(request["env"])
  os.chdir(request["cwd"])
  extra_path = [p for p in request["env"].get("PYTHONPATH", "").split(
      os.pathsep) if p and p not in sys.path]
  sys.path[1:1] = extra_path
  import random  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top
  random.seed()
  np.random.seed()
  argv = request["argv"]
  if argv[0] == "-m":
    sys.argv = [argv[1], *argv[2:]]
    sys.path[0] = request["cwd"]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
  else:
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    runpy.run_path(argv[0], run_name="__main__")
  sys.exit(0)


def _serve(sock):
  """Forks a child per request; reports pids and exit statuses."""
  wake_read, wake_write = os.pipe()
  os.set_blocking(wake_write, False)
  signal.set_wakeup_fd(wake_write)
  signal.signal(signal.SIGCHLD, lambda *_: None)
  children = set()

  def send(message):
    sock.sendall(json.dumps(message).encode() + b"\n")

  while True:
    try:
      ready, _, _ = select.select([sock, wake_read], [], [])
    except InterruptedError:
      continue
    if wake_read in ready:
      os.read(wake_read, 4096)
      while children:
        try:
          pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
          break
        if not pid:
          break
        children.discard(pid)
        send({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})
    if sock in ready:
      data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 3)
      if not data:  # The test process has gone.
        for pid in children:
          os.kill(pid, signal.SIGKILL)
        os._exit(0)  # pylint: disable=protected-access
      request = json.loads(data)
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        sock.close()
        os.close(wake_read)
        os.close(wake_write)
        return request, fds
      for fd in fds:
        os.close(fd)
      children.add(pid)
      send({"id": request["id"], "pid": pid})


def _server_main():
  sock = socket.socket(fileno=int(sys.argv[1]))
  _preload()
  sock.sendall(b'{"ready": true}\n')
  request, fds = _serve(sock)
  _child(request, fds)


# ---------------------------------------------------------------- client ----


class _Server:
  """The test process's end of one warm server."""

  def __init__(self, env):
    self.env = dict(env)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    self.process = subprocess.Popen(
        [sys.executable, "-m", "tests.warm_processes", str(theirs.fileno())],
        cwd=ROOT, env=self.env, pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    theirs.close()
    self.sock = ours
    self.lock = threading.Lock()
    self.changed = threading.Condition()
    self.pids = {}
    self.returncodes = {}
    self.next_id = 0
    reader = self.sock.makefile("rb")
    if json.loads(reader.readline() or b"{}").get("ready") is not True:
      raise RuntimeError("the warm process server did not start; run "
                         "`python -m tests.warm_processes` to see why")
    threading.Thread(target=self._read, args=(reader,), daemon=True).start()

  def _read(self, reader):
    for line in reader:
      message = json.loads(line)
      with self.changed:
        if "id" in message:
          self.pids[message["id"]] = message["pid"]
        else:
          self.returncodes[message["exited"]] = message["returncode"]
        self.changed.notify_all()

  def fork(self, argv, env, cwd, fds):
    with self.lock:
      self.next_id += 1
      request_id = self.next_id
      message = json.dumps({"id": request_id, "argv": argv, "env": env,
                            "cwd": cwd}).encode()
      socket.send_fds(self.sock, [message], fds)
    with self.changed:
      self.changed.wait_for(lambda: request_id in self.pids, timeout=60)
      return self.pids.pop(request_id)

  def returncode(self, pid, timeout):
    with self.changed:
      self.changed.wait_for(lambda: pid in self.returncodes, timeout=timeout)
      return self.returncodes.get(pid)


_SERVER = None
_SERVER_LOCK = threading.Lock()


def _server():
  global _SERVER
  with _SERVER_LOCK:
    if _SERVER is None or _SERVER.process.poll() is not None:
      from tests import helpers  # pylint: disable=g-import-not-at-top
      _SERVER = _Server(helpers.env())
    return _SERVER


def _warm_argv(command, env, cwd):
  """The argv after `python`, if a warm child can run `command`."""
  if len(command) < 2 or command[0] != sys.executable:
    return None
  if command[1] == "-m" and len(command) >= 3:
    argv = list(command[1:])
  elif command[1].endswith(".py"):
    with open(os.path.join(cwd, command[1])) as f:
      if "KERAS_BACKEND" in f.read():  # Chooses its backend at import.
        return None
    argv = list(command[1:])
  else:
    return None
  server_env = _server().env
  if any(env.get(k) != server_env.get(k) for k in IMPORT_TIME_VARIABLES):
    return None
  return argv


class WarmProcess:
  """The parts of `subprocess.Popen` that the tests use, for a warm child."""

  def __init__(self, server, argv, env, cwd, stdin, stdout, stderr, text):
    self._server = server
    self.args = argv
    self.returncode = None
    self.stdin = None
    ours, child_fds = {}, []
    for name, spec, mode in (("stdin", stdin, os.O_RDONLY),
                             ("stdout", stdout, os.O_WRONLY),
                             ("stderr", stderr, os.O_WRONLY)):
      if spec == subprocess.PIPE:
        read_fd, write_fd = os.pipe()
        if name == "stdin":
          ours[name] = os.fdopen(write_fd, "w" if text else "wb")
          child_fds.append(read_fd)
        else:
          ours[name] = os.fdopen(read_fd, "r" if text else "rb")
          child_fds.append(write_fd)
      elif spec == subprocess.STDOUT and name == "stderr":
        child_fds.append(os.dup(child_fds[1]))
      elif spec is None or spec == subprocess.DEVNULL:
        if spec is None and name != "stdin":
          child_fds.append(os.dup(1 if name == "stdout" else 2))
        else:
          child_fds.append(os.open(os.devnull, mode))
      elif isinstance(spec, int):
        child_fds.append(os.dup(spec))
      else:
        child_fds.append(os.dup(spec.fileno()))
    try:
      self.pid = server.fork(argv, env, cwd, child_fds)
    finally:
      for fd in child_fds:
        os.close(fd)
    self.stdout = ours.get("stdout")
    self.stderr = ours.get("stderr")
    self.stdin = ours.get("stdin")

  def poll(self):
    if self.returncode is None:
      self.returncode = self._server.returncode(self.pid, timeout=0)
    return self.returncode

  def wait(self, timeout=None):
    if self.returncode is None:
      code = self._server.returncode(self.pid, timeout=timeout)
      if code is None:
        raise subprocess.TimeoutExpired(self.args, timeout)
      self.returncode = code
    return self.returncode

  def communicate(self, timeout=None):
    """Reads stdout and stderr to their ends, then waits for the exit."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if self.stdin:
      self.stdin.close()
      self.stdin = None
    outputs = {}

    def drain(name, stream):
      outputs[name] = stream.read()
      stream.close()

    readers = [threading.Thread(target=drain, args=(name, stream), daemon=True)
               for name, stream in (("stdout", self.stdout),
                                    ("stderr", self.stderr)) if stream]
    for reader in readers:
      reader.start()
    for reader in readers:
      reader.join(None if deadline is None
                  else max(0.0, deadline - time.monotonic()))
      if reader.is_alive():
        raise subprocess.TimeoutExpired(self.args, timeout)
    self.wait(None if deadline is None
              else max(0.0, deadline - time.monotonic()))
    self.stdout = self.stderr = None
    return outputs.get("stdout"), outputs.get("stderr")

  def send_signal(self, signum):
    if self.poll() is None:
      os.kill(self.pid, signum)

  def terminate(self):
    self.send_signal(signal.SIGTERM)

  def kill(self):
    self.send_signal(signal.SIGKILL)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    for stream in (self.stdout, self.stderr, self.stdin):
      if stream:
        stream.close()
    self.wait()


def popen(command, cwd=None, env=None, stdin=None, stdout=None, stderr=None,
          text=False, **kwargs):
  """`subprocess.Popen(command, ...)`, forked warm when it can be."""
  env = dict(os.environ if env is None else env)
  cwd = os.path.abspath(cwd or os.getcwd())
  argv = None if kwargs else _warm_argv(command, env, cwd)
  if argv is None:
    return subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin,
                            stdout=stdout, stderr=stderr, text=text, **kwargs)
  return WarmProcess(_server(), argv, env, cwd, stdin, stdout, stderr, text)


def run(command, cwd=None, env=None, capture_output=False, text=False,
        timeout=None, check=False, stdout=None, stderr=None):
  """`subprocess.run(command, ...)`, forked warm when it can be."""
  if capture_output:
    stdout = stderr = subprocess.PIPE
  proc = popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
               stdout=stdout, stderr=stderr, text=text)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    raise
  result = subprocess.CompletedProcess(command, proc.returncode, out, err)
  if check:
    result.check_returncode()
  return result


if __name__ == "__main__":
  _server_main()

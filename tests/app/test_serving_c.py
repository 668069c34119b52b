"""The exports run in TensorFlow's C SavedModel loader, as in TF Serving.

TensorFlow Serving loads a SavedModel with TensorFlow's C++ loader, whose C
entry point `TF_LoadSessionFromSavedModel` (tag "serve") ships in the
TensorFlow wheel with its headers. tests/c/savedmodel_client.c is a small C
program on that API; it is compiled with gcc once per module, against the
installed `tensorflow` package (rpath: it runs without LD_LIBRARY_PATH).

A tiny VAE and a tiny VIB are exported; the tensor names of every SignatureDef
are read from saved_model.pb (as the model server reads them) and passed to
the client, which feeds the request from files, runs TF_SessionRun and writes
the outputs. They must equal the outputs of the same signatures called from
Python (`tf.saved_model.load(path).signatures[name]`). The sampling outputs
(`z`, `log_likelihood`, `elbo`, `probabilities`) are no exception: the export
seeds its stateless random ops with a fingerprint of the request bytes, so
the same request draws the same noise in both runtimes.

The requests a signature must refuse (tests/serving_requests.py: wrong
shapes, NaN/Inf, values out of range or support, too many rows) are sent to
the C loader too, with a Bernoulli VAE on binary digits as a third export;
each must fail with INVALID_ARGUMENT and the message the Python loader gives,
and the same session must then still answer good requests as before.

The module is skipped, saying why, only when gcc or TensorFlow's C headers are
missing.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tests import helpers
from tests import serving_requests
from vib_flows import data as data_lib
from vib_flows.app import export
from vib_flows.app import model_builder

pytestmark = pytest.mark.slow  # Builds a C program, exports two models.

CLIENT_SOURCE = os.path.join(helpers.ROOT, "tests", "c",
                             "savedmodel_client.c")
C_API_HEADER = os.path.join("tensorflow", "c", "c_api.h")
# TF_DataType numbers (tensorflow/c/tf_datatype.h) of the outputs' dtypes.
TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}
SERVING_TAG = "serve"
# Both runtimes execute the same graph, but their graph optimizers may fuse
# ops differently (e.g. MatMul + BiasAdd): float32 reassociation only.
RTOL, ATOL = 1e-5, 1e-5
TF_INVALID_ARGUMENT = 3  # TF_Code (tensorflow/c/tf_status.h).
# export.max_log_likelihood_rows of the exports: the good request's rows.
MAX_ROWS = serving_requests.MAX_ROWS


# ------------------------------------------------------------------ compile
def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
  return subprocess.run(args, capture_output=True, text=True, check=False,
                        timeout=600, **kwargs)


def _defining_libraries(symbols: list[str],
                        libraries: list[str]) -> dict[str, str]:
  """Maps each symbol to the first library whose dynamic table defines it.

  The wheel splits the C API: sessions and graphs live in
  libtensorflow_cc.so.2, statuses and tensors in libtensorflow_framework.so.2
  (`nm -D` shows which; symbols carry a version, "TF_SessionRun@@tensorflow").

  Raises:
    AssertionError: a symbol no library defines (named).
  """
  defined = {}
  for library in libraries:
    proc = _run(["nm", "-D", "--defined-only", library])
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.splitlines():
      name = line.split()[-1].split("@")[0]
      defined.setdefault(name, library)
  missing = sorted(s for s in symbols if s not in defined)
  assert not missing, f"No library in {libraries} defines {missing}."
  return {s: defined[s] for s in symbols}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> str:
  """Path of the compiled C client; skips if gcc or the C headers are absent."""
  gcc = shutil.which("gcc")
  if gcc is None:
    pytest.skip("gcc is not on PATH: cannot build the C SavedModel client.")
  include_dir = tf.sysconfig.get_include()
  if not os.path.isfile(os.path.join(include_dir, C_API_HEADER)):
    pytest.skip(f"TensorFlow's C API header {C_API_HEADER} is not installed "
                f"under {include_dir}.")
  lib_dir = tf.sysconfig.get_lib()
  build = tmp_path_factory.mktemp("c_client")
  obj = str(build / "savedmodel_client.o")
  # -isystem: warnings of TensorFlow's headers are not the client's.
  proc = _run([gcc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
               "-isystem", include_dir, "-c", CLIENT_SOURCE, "-o", obj])
  assert proc.returncode == 0, proc.stderr
  undefined = _run(["nm", "-u", obj]).stdout.split()
  api = sorted({s for s in undefined if s.startswith("TF_")})
  assert "TF_LoadSessionFromSavedModel" in api
  candidates = sorted(
      os.path.join(lib_dir, n) for n in os.listdir(lib_dir)
      if n.startswith("libtensorflow") and ".so" in n)
  libraries = sorted(set(_defining_libraries(api, candidates).values()))
  binary = str(build / "savedmodel_client")
  # gold links against the 1 GB libtensorflow_cc ~5x faster than GNU ld.
  linker = ["-fuse-ld=gold"] if shutil.which("ld.gold") else []
  proc = _run([gcc, *linker, obj, "-o", binary, "-L", lib_dir,
               *[f"-l:{os.path.basename(lib)}" for lib in libraries],
               f"-Wl,-rpath,{lib_dir}"])
  assert proc.returncode == 0, proc.stderr
  return binary


def _client_env() -> dict[str, str]:
  """The client's environment: no LD_LIBRARY_PATH, the rpath finds the libs."""
  child = helpers.env()
  child.pop("LD_LIBRARY_PATH", None)
  return child


# ------------------------------------------------------------------ exports
@pytest.fixture(scope="module")
def exports(
    tmp_path_factory) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
  """Kind -> (export dir, requests {input name: float32 array}).

  "bernoulli" is a VAE with a Bernoulli likelihood on binary digits.
  """
  root = tmp_path_factory.mktemp("c_exports")
  result = {}
  for kind in serving_requests.KINDS:
    config = serving_requests.export_config(kind)
    config.export.warmup_requests = False  # Not read by the C loader.
    splits = data_lib.load(config)
    model = model_builder.build_model(config, splits.info)
    path = export.export_model(model, config, splits.info,
                               base_dir=str(root / kind))
    z = np.random.default_rng(0).normal(size=(5, config.model.latent_dim))
    requests = {"x": np.asarray(splits.test.x[:MAX_ROWS], np.float32),
                "z": z.astype(np.float32)}
    result[kind] = (path, requests)
  return result


def signature_tensors(
    export_dir: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
  """{signature: (inputs {key: tensor name}, outputs {key: tensor name})}.

  Read from the "serve" MetaGraph of saved_model.pb, as the model server
  does; `__saved_model_init_op` (no inputs, not a signature) is left out.
  """
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  (meta_graph,) = [m for m in proto.meta_graphs
                   if SERVING_TAG in m.meta_info_def.tags]
  return {
      name: ({k: v.name for k, v in sig.inputs.items()},
             {k: v.name for k, v in sig.outputs.items()})
      for name, sig in meta_graph.signature_def.items()
      if not name.startswith("__")
  }


def read_output(path: str) -> np.ndarray:
  """An output file of the client: header "DTYPE NDIMS D0 ..." + raw bytes."""
  with open(path, "rb") as f:
    header = f.readline().split()
    data = f.read()
  dtype, ndims = TF_DTYPES[int(header[0])], int(header[1])
  shape = [int(d) for d in header[2:2 + ndims]]
  return np.frombuffer(data, dtype).reshape(shape)


def run_client(
    client_path: str, export_dir: str, workdir: str,
    requests: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """Runs every signature in one C session; {signature: {output: array}}."""
  args = [client_path, export_dir]
  files = {}
  for name, (inputs, outputs) in sorted(signature_tensors(export_dir).items()):
    if len(args) > 2:
      args.append("--")
    for key, tensor in sorted(inputs.items()):
      path = os.path.join(workdir, f"{name}.{key}.in")
      requests[key].tofile(path)
      args += ["-i", tensor, ",".join(map(str, requests[key].shape)), path]
    for key, tensor in sorted(outputs.items()):
      files[name, key] = os.path.join(workdir, f"{name}.{key}.out")
      args += ["-o", tensor, files[name, key]]
  proc = _run(args, env=_client_env())
  assert proc.returncode == 0, proc.stderr[-4000:]
  result = {}
  for (name, key), path in files.items():
    result.setdefault(name, {})[key] = read_output(path)
  return result


@pytest.fixture(scope="module")
def served(client, exports, tmp_path_factory):
  """Kind -> (export dir, requests, outputs of the C client)."""
  result = {}
  for kind in ("vae", "vib"):
    path, requests = exports[kind]
    workdir = str(tmp_path_factory.mktemp(f"c_{kind}"))
    result[kind] = (path, requests, run_client(client, path, workdir, requests))
  return result


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_every_signature_gives_pythons_outputs_in_the_c_loader(served, kind):
  path, requests, c_outputs = served[kind]
  loaded = tf.saved_model.load(path)
  expected = {"vae": {"serving_default", "encode", "decode", "log_likelihood"},
              "vib": {"serving_default", "classify", "encode"}}[kind]
  assert set(c_outputs) == set(loaded.signatures) == expected
  for name, fn in loaded.signatures.items():
    inputs = {k: tf.constant(requests[k])
              for k in fn.structured_input_signature[1]}
    python = {k: v.numpy() for k, v in fn(**inputs).items()}
    assert set(c_outputs[name]) == set(python), name
    for key, want in python.items():
      got = c_outputs[name][key]
      where = f"{kind} {name}/{key}"
      assert got.dtype == want.dtype and got.shape == want.shape, where
      assert np.all(np.isfinite(got)), where
      if key == "class_ids":
        _assert_same_classes(got, c_outputs[name]["probabilities"], want,
                             python["probabilities"], where)
      else:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL,
                                   err_msg=where)


def _assert_same_classes(got, got_probs, want, want_probs, where):
  """class_ids is the argmax of probabilities in each runtime.

  The runtimes agree wherever the top two probabilities differ by more than
  rounding.
  """
  np.testing.assert_array_equal(got, got_probs.argmax(-1), err_msg=where)
  np.testing.assert_array_equal(want, want_probs.argmax(-1), err_msg=where)
  top2 = np.sort(want_probs, axis=-1)[:, -2:]
  clear = top2[:, 1] - top2[:, 0] > 10 * (ATOL + RTOL)
  np.testing.assert_array_equal(got[clear], want[clear], err_msg=where)


def _run_args(export_dir, signature, request, workdir, name, refuse):
  """One RUN of the client: signature's input `request`, all outputs."""
  (key, tensor), = signature_tensors(export_dir)[signature][0].items()
  path = os.path.join(workdir, f"{name}.in")
  np.asarray(request, np.float32).tofile(path)
  args = ["-e"] if refuse else []
  args += ["-i", tensor, ",".join(map(str, np.shape(request))), path]
  outputs = {}
  for out, out_tensor in signature_tensors(export_dir)[signature][1].items():
    outputs[out] = os.path.join(workdir, f"{name}.{out}.out")
    args += ["-o", out_tensor, outputs[out]]
  return args, key, outputs


@pytest.mark.parametrize("kind", ["vae", "vib", "bernoulli"])
def test_the_c_loader_refuses_what_the_model_cannot_answer(
    client, exports, tmp_path, kind):
  """Each bad request fails with INVALID_ARGUMENT and Python's message.

  All runs share one C session: the bad requests, then requests at the edge
  of the contract and a good request, which must be answered as Python
  answers them.
  """
  path, requests = exports[kind]
  refusals = serving_requests.refusals(kind, requests["x"], requests["z"],
                                       MAX_ROWS)
  answered = serving_requests.answered(kind, requests["x"], MAX_ROWS)
  answered["good"] = ("serving_default", "x", requests["x"])
  args, outputs = [client, path], {}
  for case, (sig, name, request, _) in refusals.items():
    run, key, _ = _run_args(path, sig, request, str(tmp_path), case, True)
    assert key == name
    args += [*run, "--"]
  for case, (sig, name, request) in answered.items():
    run, key, outputs[case] = _run_args(path, sig, request, str(tmp_path),
                                        case, False)
    assert key == name
    args += [*run, "--"]
  proc = _run(args[:-1], env=_client_env())
  assert proc.returncode == 0, proc.stderr[-4000:]
  parts = re.split(r"^== run (\d+) refused: code (\d+)$", proc.stdout,
                   flags=re.MULTILINE)
  refused = {int(n): (int(code), text)
             for n, code, text in zip(parts[1::3], parts[2::3], parts[3::3])}
  assert sorted(refused) == list(range(1, len(refusals) + 1)), proc.stdout
  for number, (case, (_, _, _, message)) in enumerate(refusals.items(), 1):
    code, text = refused[number]
    assert code == TF_INVALID_ARGUMENT, (case, code, text)
    assert message in text, (case, message, text)
  written = {n.split(".")[0] for n in os.listdir(tmp_path)
             if n.endswith(".out")}
  assert written == set(answered), written  # None of a refused run.
  loaded = tf.saved_model.load(path)
  for case, files in outputs.items():
    sig, name, request = answered[case]
    python = {k: v.numpy() for k, v in loaded.signatures[sig](
        **{name: tf.constant(request)}).items()}
    got = {out: read_output(file) for out, file in files.items()}
    for out, want in python.items():
      where = f"{kind} {case}/{out}"
      assert got[out].shape == want.shape, where
      assert np.all(np.isfinite(got[out])), where
      if out == "class_ids":
        _assert_same_classes(got[out], got["probabilities"], want,
                             python["probabilities"], where)
      else:
        np.testing.assert_allclose(got[out], want, rtol=RTOL, atol=ATOL,
                                   err_msg=where)

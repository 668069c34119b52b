"""Size limits before building (`vib_flows.app.limits`).

The parameter count of `limits.estimate` against the built models'
`count_params()`; sizes beyond the bounds, memory beyond the machine and
flow passes beyond the graph limit refused naming the field; the warning of
a large run; a thousand flows refused in seconds, before the data and the
model.
"""

import os
import re
import time

import keras
import pytest

from tests import helpers
from vib_flows.app import config_checks
from vib_flows.app import faults
from vib_flows.app import limits
from vib_flows.app import model_builder
from vib_flows.data import DataInfo

DIGITS = DataInfo("digits", (64,), 10, 17, "levels")


MNIST = DataInfo("mnist", (28, 28, 1), 10, None, "static")


SYNTHETIC = DataInfo("synthetic:banana", (64,), None, None, "static")


# Every shipped config's data, as `data.load` describes it.
_SHIPPED = {"default": DIGITS, "test": DIGITS, "vae_digits": DIGITS,
            "vib_digits": DataInfo("digits", (64,), 10, None, "scale"),
            "vae_mnist": MNIST, "vib_mnist": MNIST, "sylvester_mnist": MNIST,
            "vae_synthetic": SYNTHETIC, "vae_synthetic_true": SYNTHETIC}


_EXAMPLES = {"digits": 1797, "mnist": 70_000, "synthetic:banana": 12_000}


@pytest.mark.parametrize("name,overrides,info", [
    ("test", {}, DIGITS),
    ("test", {"flow.name": "sylvester_orthogonal", "flow.amortized": True,
              "flow.num_flows": 5}, DIGITS),
    ("test", {"flow.name": "iaf", "flow.amortized": True,
              "model.prior": "flow"}, DIGITS),
    ("test", {"flow.name": "spline", "flow.amortized": True,
              "model.likelihood": "gaussian", "data.preprocess": "scale"},
     DataInfo("digits", (64,), 10, None, "scale")),
    ("vae_digits", {}, DIGITS),
    ("vib_digits", {}, _SHIPPED["vib_digits"]),
    ("vae_mnist", {}, MNIST),
    ("sylvester_mnist", {}, MNIST),
])
def test_parameter_estimate_matches_the_built_model(name, overrides, info):
  config = helpers.config(name, **overrides)
  config_checks.validate(config)
  keras.backend.clear_session()
  model = model_builder.build_model(config, info)
  found = limits.estimate(config, info.input_shape, info.num_classes,
                          info.num_levels)
  assert found.parameters == pytest.approx(model.count_params(), rel=0.02)
  if config.flow.amortized:  # The context heads are counted.
    assert found.parameter_parts["flow"] > 1000


@pytest.mark.parametrize("name", sorted(_SHIPPED))
def test_shipped_configs_pass_the_limits(name):
  config = helpers.config(name)
  config_checks.validate(config)
  info = _SHIPPED[name]
  found = limits.estimate(config, info.input_shape, info.num_classes,
                          info.num_levels, _EXAMPLES[str(info.name)])
  # They train on a 2-core VM of 23.5 GiB (docs/performance.md), without the
  # warning above half of it.
  assert found.memory_bytes < 10 * 2**30, found
  assert found.flow_layers <= limits.MAX_FLOW_LAYERS


@pytest.mark.parametrize("field,value,named", [
    ("flow.num_flows", 257, "flow.num_flows=257 exceeds the limit of 256"),
    ("model.latent_dim", 5000, "model.latent_dim=5000 exceeds the limit of "
     "4096"),
    ("model.encoder_hidden", (64, 100_000), "model.encoder_hidden (each "
     "width)=100000 exceeds the limit of 16384"),
    ("flow.hidden_units", 20_000, "flow.hidden_units=20000"),
    ("loss.num_samples", 10_000, "loss.num_samples=10000"),
])
def test_sizes_beyond_the_bounds_are_refused_naming_the_field(
    field, value, named):
  config = helpers.config("test", **{field: value})
  with pytest.raises(ValueError, match=re.escape(named)) as error:
    config_checks.validate(config)
  assert "\n" not in str(error.value)


def test_maf_passes_are_refused_beyond_the_graph_limit():
  config = helpers.config("test", **{"flow.name": "maf", "flow.num_flows": 65,
                                     "model.latent_dim": 64})
  with pytest.raises(ValueError, match=r"flow.num_flows=65 .* traces 4160 "
                     r"conditioner passes .* limit of 4096"):
    config_checks.validate(config)
  config.flow.name = "iaf"  # One pass per layer.
  config_checks.validate(config)


class _Splits:
  """What `limits.check` reads of `data.DataSplits`."""

  def __init__(self, info, examples):
    self.info = info
    x = type("X", (), {"shape": (examples,)})()
    self.train = type("Split", (), {"x": x})()
    self.validation = self.test = None


def _small_machine(monkeypatch, gib):
  monkeypatch.setattr(limits, "machine_memory",
                      lambda: (int(gib * 2**30), "the machine's memory"))
  monkeypatch.setattr(limits, "available_memory", lambda: None)


def test_memory_beyond_the_machine_is_refused_naming_the_field(monkeypatch):
  _small_machine(monkeypatch, 4)
  config = helpers.config("test", **{"train.batch_size": 200_000})
  with pytest.raises(faults.ConfigError) as error:
    limits.check(config, _Splits(DIGITS, 1000))
  message = str(error.value)
  assert "\n" not in message
  assert re.search(r"^train\.batch_size=200000: training needs an estimated "
                   r"[\d.]+ GiB \(.*activations [\d.]+ GiB.*\), more than the "
                   r"machine's memory, 4 GiB", message), message
  config = helpers.config("test", **{"model.encoder_hidden": (16384, 16384),
                                     "model.decoder_hidden": (16384,)})
  with pytest.raises(faults.ConfigError, match=r"^model\.encoder_hidden="
                     r"\(16384, 16384\): training needs an estimated [\d.]+ "
                     r"GiB \(2\d{8} parameters; weights [\d.]+ GiB\)"):
    limits.check(config, _Splits(DIGITS, 1000))


def test_large_run_fits_with_one_warning_line(monkeypatch, caplog):
  config = helpers.config("test")
  need = limits.estimate(config, DIGITS.input_shape, 10, 17, 1000)
  _small_machine(monkeypatch, 1.5 * need.memory_bytes / 2**30)
  with caplog.at_level("WARNING"):
    found = limits.check(config, _Splits(DIGITS, 1000))
  assert found.memory_bytes == need.memory_bytes
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "\n" not in warnings[0]
  assert re.match(r"Large run: an estimated [\d.]+ GiB of memory to train",
                  warnings[0]), warnings


def test_many_flow_passes_under_xla_warn_about_the_compile(caplog):
  config = helpers.config("test", **{"flow.name": "maf", "flow.num_flows": 16,
                                     "train.jit_compile": True})
  with caplog.at_level("WARNING"):
    found = limits.check(config, _Splits(DIGITS, 1000))
  assert found.flow_passes == 64
  assert any(r.getMessage().startswith("Large graph: 64 flow passes")
             for r in caplog.records)
  caplog.clear()
  config.train.jit_compile = False
  with caplog.at_level("WARNING"):
    limits.check(config, _Splits(DIGITS, 1000))
  assert not [r for r in caplog.records if "Large graph" in r.getMessage()]


def test_machine_memory_is_the_physical_or_the_cgroup_limit(monkeypatch):
  total, source = limits.machine_memory()
  assert total > 2**30 and source
  monkeypatch.setattr(limits, "_cgroup_limit", lambda: 2**30)
  assert limits.machine_memory() == (2**30, "the cgroup's memory limit")


def test_a_thousand_flows_are_refused_in_seconds(tmp_path):
  workdir = str(tmp_path / "run")
  start = time.monotonic()
  result = helpers.run_main(
      ["--config=configs/test.py", f"--workdir={workdir}",
       "--config.flow.num_flows=1000"], timeout=300, check=False)
  seconds = time.monotonic() - start
  assert result.returncode == faults.EXIT_USAGE, result.stderr[-3000:]
  last = helpers.last_line(result.stderr)
  assert last.startswith("vib_flows: flow.num_flows=1000 exceeds the limit "
                         "of 256 flow layers"), last
  assert "Traceback" not in result.stderr
  # Refused by the config checks, before the data and the model.
  assert not helpers.phases_logged(result.stderr)
  assert not os.path.exists(workdir)
  assert seconds < 300  # Once: 23 minutes and 10.9 GB before a SIGKILL.

"""The flow registry: options checked against constructors, user flows, Reverse.

A flow defined outside vib_flows (tests/user_flow.py) is registered by
importing its module and trained from the command line by name.
"""

import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import flows
from vib_flows.app import config_checks
from vib_flows.app import model_builder
from vib_flows.app import run_state


def test_misspelt_option_is_refused_with_the_valid_ones():
  with pytest.raises(ValueError, match=r"'num_binz'.*valid options: "
                     r"hidden_units, num_bins, bound"):
    flows.get("spline", num_binz=4)


def test_options_are_the_constructor_arguments_up_to_flow():
  assert flows.option_names("iaf") == ["hidden_units", "forget_bias"]
  assert flows.option_names("sylvester_householder") == ["num_householder"]
  assert flows.option_names("planar") == []


def test_config_options_reach_the_flow_and_typos_are_refused():
  config = helpers.config(flow__name="spline", flow__num_flows=1)
  config.flow.options.num_bins = 3
  config.flow.options.bound = 2.0
  kwargs = model_builder.flow_kwargs(config, "spline")
  assert kwargs == {"hidden_units": 16, "num_bins": 3, "bound": 2.0}
  config_checks.validate(config)
  config.flow.options.bins = 3
  with pytest.raises(ValueError, match="'bins'.*valid options"):
    config_checks.validate(config)


def test_register_refuses_non_flows_and_taken_names():
  with pytest.raises(TypeError, match="subclass of vib_flows.flows.Flow"):
    flows.register("not_a_flow")(object)
  with pytest.raises(ValueError, match="'planar' is already registered"):

    @flows.register("planar")
    class Other(flows.Flow):  # pylint: disable=unused-variable
      pass


def test_amortized_parameter_declared_before_build_names_the_cause():
  """A user flow declaring parameters in __init__ of an amortized flow."""
  layer = flows.Flow(amortized=True)
  with pytest.raises(RuntimeError, match="runs in build_flow, once the "
                     "context size C is known"):
    layer.add_flow_parameter("scale", (3,))


def test_flow_module_registers_a_user_flow():
  flows.import_modules("tests.user_flow")
  layer = flows.get("user_scale", dim=3, init_log_scale=0.5)
  y, log_det = layer(tf.ones((2, 3)))
  np.testing.assert_allclose(y, np.full((2, 3), np.exp(0.5)), rtol=1e-6)
  np.testing.assert_allclose(log_det, [1.5, 1.5], rtol=1e-6)
  with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
    flows.import_modules("no_such_module")


def test_reverse_has_log_det_zero_and_is_its_own_inverse():
  z = tf.constant(np.random.default_rng(0).normal(size=(3, 4)))
  layer = flows.Reverse(dtype="float64")
  y, log_det = layer(z)
  np.testing.assert_array_equal(y, z.numpy()[:, ::-1])
  np.testing.assert_array_equal(log_det, np.zeros(3))
  z_back, log_det_inverse = layer.inverse(y)
  np.testing.assert_array_equal(z_back, z)
  np.testing.assert_array_equal(log_det_inverse, np.zeros(3))


@pytest.mark.parametrize("num_flows,expected", [
    (1, ["maf"]),
    (2, ["maf", "reverse", "maf", "reverse"]),
    (3, ["maf", "reverse", "maf", "reverse", "maf"]),
])
def test_stack_keeps_the_order_of_z0_with_reverse_between_layers(
    num_flows, expected):
  """Layer k conditions on the reversed order for odd k; z_K in z_0's order."""
  stack = flows.make_stack("maf", num_flows, dim=3)
  assert [layer.flow_name for layer in stack.flows] == expected
  assert [f.flow_name for f in flows.make_stack("radial", 2).flows] == [
      "radial", "radial"]


def test_reverse_around_a_layer_gives_the_reversed_order_layer():
  """FlowStack([Reverse(), f, Reverse()]) computes R f R.

  For sylvester_triangular that is Q = the reversal permutation P:
  f(z) = z + P R h(R~ P z + b), dependencies j <= i (lower-triangular
  Jacobian).
  """
  layer = flows.FlowStack(
      [flows.Reverse(dim=4, dtype="float64"),
       flows.get("sylvester_triangular", dim=4, dtype="float64"),
       flows.Reverse(dim=4, dtype="float64")], dtype="float64")
  rng = np.random.default_rng(0)
  for w in layer.weights:
    w.assign(rng.normal(scale=0.7, size=w.shape))
  z = tf.constant(rng.normal(size=(5, 4)))
  with tf.GradientTape() as tape:
    tape.watch(z)
    y, log_det = layer(z)
  r, r_tilde, b = (np.asarray(t)
                   for t in layer.flows[1].triangular_matrices())
  p = np.eye(4)[::-1]
  a = z.numpy() @ p.T @ r_tilde.T + b
  np.testing.assert_allclose(y, z.numpy() + np.tanh(a) @ r.T @ p.T,
                             rtol=1e-12)
  np.testing.assert_allclose(log_det, np.sum(np.log1p(
      (1 - np.tanh(a)**2) * np.diag(r) * np.diag(r_tilde)), -1), rtol=1e-12)
  jacobian = tape.batch_jacobian(y, z).numpy()
  np.testing.assert_array_equal(np.triu(jacobian, 1), 0.0)
  assert np.max(np.abs(np.tril(jacobian, -1))) > 1e-3


@pytest.mark.parametrize("name", ["maf", "sylvester_triangular", "planar"])
def test_reverse_option_is_refused_naming_the_replacement(name):
  with pytest.raises(ValueError, match=r"no option\(s\) 'reverse'.*"
                     r"vib_flows.flows.Reverse.*flows.make_stack"):
    flows.get(name, dim=3, reverse=True)
  with pytest.raises(ValueError, match="vib_flows.flows.Reverse"):
    flows.check_options("iaf", ["reverse"])  # A config's flow.options.


def test_a_user_flow_that_takes_reverse_gets_it():

  @flows.register("user_reversible_order", package="vib_flows_tests")
  class UserOrder(flows.Flow):  # pylint: disable=unused-variable
    needs_permutation = True

    def __init__(self, reverse: bool = False, **kwargs):
      self.reverse = reverse
      super().__init__(**kwargs)

  with warnings.catch_warnings():
    warnings.simplefilter("error")
    layer = flows.get("user_reversible_order", dim=2, reverse=True)
  assert isinstance(layer, UserOrder) and layer.reverse


@pytest.mark.slow
def test_user_flow_trains_from_the_command_line(tmp_path):
  run_dir = str(tmp_path / "run")
  helpers.run_main([
      "--config=configs/test.py", f"--workdir={run_dir}",
      "--config.flow.module=tests.user_flow",
      "--config.flow.name=user_scale", "--config.flow.num_flows=1",
      "--config.train.num_epochs=1", "--config.export.enabled=False",
  ])
  assert os.path.exists(os.path.join(run_dir, "metrics.json"))
  # Restoring the run imports the flow's module.
  layer = run_state.restore_run(run_dir).model.flow.flows[0]
  assert layer.flow_name == "user_scale"
  log_scale = layer.get_weights()[0]  # Initialized to 0.
  assert np.max(np.abs(log_scale)) > 1e-3, log_scale

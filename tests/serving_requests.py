"""The test exports, and the requests their signatures must refuse.

Shared by tests/app/test_serving.py and tests/app/test_export.py (the
SavedModel in Python) and tests/app/test_serving_c.py (TensorFlow's C API):
the same request must be refused with the same message in both runtimes.

`export_config(kind)` is the config of one test export: `kind` is "vae"
(categorical levels 0..16), "vib" (grey values in [0, 1]) or "bernoulli" (a
Bernoulli VAE on binary x), the models configs/test.py exports, with at most
`MAX_ROWS` rows per log_likelihood request. `SIGNATURES` and `OUTPUTS` are
what their SavedModels serve.

`refusals(kind, x, z, max_rows)` -> {case: (signature, input, request,
message)}; `message` is a part of the error text (the graph op's own words
follow or precede it). x [B, 64] and z [B, d] are good requests.
"""

import numpy as np

from tests import helpers

# export.max_log_likelihood_rows of the test exports: the good request's rows.
MAX_ROWS = 7
# Export -> config.model.kind; "bernoulli" is a VAE on binary digits.
KINDS = {"vae": "vae", "vib": "vib", "bernoulli": "vae"}
# Signature -> its inputs, of each kind of model.
SIGNATURES = {
    "vae": {"serving_default": {"x"}, "encode": {"x"}, "decode": {"z"},
            "log_likelihood": {"x"}},
    "vib": {"serving_default": {"x"}, "classify": {"x"}, "encode": {"x"}},
}
# Function -> its outputs (serving_default is encode or classify).
OUTPUTS = {"encode": {"z_mean", "z_stddev", "z"}, "decode": {"x_mean"},
           "log_likelihood": {"elbo", "log_likelihood"},
           "classify": {"probabilities", "class_ids"}}
# Data ranges of the three test exports (`serving.input_range`).
RANGES = {"vae": (0, 16), "vib": (0, 1), "bernoulli": (0, 1)}


def _shape_message(function, name, event, got):
  event = ", ".join(map(str, event))
  got = ", ".join(map(str, got))
  return (f"{function}: {name} must have shape [batch, {event}] (one example "
          f"is [{event}]); got [{got}]")


def _values(x):
  """"[min, max]" of x as the range message prints them."""
  return f"[{np.min(x):g}, {np.max(x):g}]"


def _with(x, value):
  """A copy of x with value at [0, 3]."""
  x = np.array(x, np.float32)
  x[0, 3] = value
  return x


def refusals(kind, x, z=None, max_rows=None):
  """The bad requests of one export: {case: (signature, input, array, text)}.

  Args:
    kind: "vae", "vib" or "bernoulli".
    x: a good x request [B, 64] float32 (in the model's representation).
    z: a good z request [B, d] (VAEs).
    max_rows: export.max_log_likelihood_rows of the export (VAEs).
  """
  x = np.asarray(x, np.float32)
  rows, width = x.shape
  low, high = RANGES[kind]
  first = "encode" if kind != "vib" else "classify"  # serving_default's.
  range_text = (f"x must be in [{low}, {high}] (the representation the model "
                "was trained on); got values in ")
  negative = _with(x, -1.0)
  cases = {
      # Rank 3 [B, 64, 1] was answered as if it were [B, 64].
      "rank3": ("serving_default", "x", x[..., None],
                _shape_message(first, "x", [width], [rows, width, 1])),
      "depth2": ("encode", "x", np.stack([x, x], -1),
                 _shape_message("encode", "x", [width], [rows, width, 2])),
      "scalar": ("encode", "x", np.float32(x[0, 0]),
                 _shape_message("encode", "x", [width], [])),
      "nan": ("encode", "x", _with(x, np.nan),
              "encode: x holds NaN or infinite values"),
      "inf": (first, "x", _with(x, np.inf),
              f"{first}: x holds NaN or infinite values"),
      "negative": ("encode", "x", negative,
                   f"encode: {range_text}{_values(negative)}"),
      # 1e30 got a confident answer (a probability of 1.0, or NaN codes).
      "huge": (first, "x", np.full_like(x, 1e30),
               f"{first}: {range_text}[1e+30, 1e+30]"),
  }
  if kind == "vib":
    above = _with(x, 1.5)
    cases["above_one"] = ("classify", "x", above,
                          f"classify: {range_text}{_values(above)}")
    return cases
  above = _with(x, high + 1)
  d = z.shape[1]
  cases.update({
      "z_rank3": ("decode", "z", z[..., None],
                  _shape_message("decode", "z", [d], [z.shape[0], d, 1])),
      "z_width": ("decode", "z", z[:, :-1],
                  _shape_message("decode", "z", [d], [z.shape[0], d - 1])),
      "z_inf": ("decode", "z", _with(z, -np.inf),
                "decode: z holds NaN or infinite values"),
      "ll_rank3": ("log_likelihood", "x", x[..., None],
                   _shape_message("log_likelihood", "x", [width],
                                  [rows, width, 1])),
      "ll_nan": ("log_likelihood", "x", _with(x, np.nan),
                 "log_likelihood: x holds NaN or infinite values"),
      "ll_above": ("log_likelihood", "x", above,
                   f"log_likelihood: {range_text}{_values(above)}"),
      "ll_rows": ("log_likelihood", "x",
                  np.zeros((max_rows + 1, width), np.float32),
                  f"log_likelihood: x may hold at most {max_rows} rows per "
                  "request (export.max_log_likelihood_rows); got "
                  f"{max_rows + 1}: split the request into requests of at "
                  f"most {max_rows} rows"),
  })
  if kind == "vae":
    cases["ll_non_integer"] = (
        "log_likelihood", "x", _with(x, 3.5),
        "log_likelihood: x must hold integer levels: the categorical "
        f"likelihood p(x|z) is defined on them only; got 1 of {x.size} "
        "non-integer values, e.g. 3.5")
  else:
    # A constant grey image outscored real digits.
    cases["ll_grey"] = (
        "log_likelihood", "x", np.full_like(x, 0.5),
        "log_likelihood: x must be binary, 0 or 1: the Bernoulli likelihood "
        f"p(x|z) is defined on {{0, 1}} only; got {x.size} of {x.size} "
        "values that are not 0 or 1, e.g. 0.5")
  return cases


def export_config(kind):
  """configs/test.py as the export `kind` ("vae", "vib" or "bernoulli")."""
  config = helpers.config("test", **{"model.kind": KINDS[kind]})
  if kind == "bernoulli":
    config.model.likelihood = "bernoulli"  # data.preprocess "auto": static.
  config.export.max_log_likelihood_rows = MAX_ROWS
  return config


def answered(kind, x, max_rows=None):
  """Requests at the edge of the contract that are answered: {case: ...}.

  (signature, input, array) each: values at the range's ends, grey values
  to a Bernoulli model's encoder (it reads them; only the likelihood needs
  0/1), and a log_likelihood request of exactly `max_rows` rows.
  """
  x = np.asarray(x, np.float32)
  low, high = RANGES[kind]
  first = "encode" if kind != "vib" else "classify"
  ends = np.where(np.arange(x.shape[1]) % 2, low, high) * np.ones_like(x)
  cases = {"ends": (first, "x", ends.astype(np.float32))}
  if kind == "bernoulli":
    cases["grey_encode"] = ("encode", "x", np.full_like(x, 0.5))
  if kind != "vib":
    cases["ll_max_rows"] = ("log_likelihood", "x",
                            np.resize(x, (max_rows, x.shape[1])))
  return cases

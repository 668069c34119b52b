"""Runs each benchmark group and turns its timings into table rows.

Rows and their ratios are described in `report`; the performance targets in
`targets`.
"""

import os

from absl import logging

from experiments.benchmarks import evaluation
from experiments.benchmarks import handwritten_spec
from experiments.benchmarks import handwritten_tf
from experiments.benchmarks import package_step
from experiments.benchmarks import synthetic
from experiments.benchmarks import timing

# Hand-written step of the same shapes as each no-flow package case.
HAND_OF = {"vae_none": "hand_vae", "vib_none": "hand_vib"}
PACKAGE_OF = {v: k for k, v in HAND_OF.items()}


def _label(name, xla):
  return f"{name} [xla {'on' if xla else 'off'}]"


def _row(group, case, xla, t, **extra):
  row = {"group": group, "case": case, "xla": xla,
         "examples_per_second": t.examples_per_second,
         "ms_per_step": t.ms_per_step, "cpu_ms_per_step": t.cpu_ms_per_step,
         "best_ms_per_step": t.best_ms_per_step,
         "spread": t.spread,
         "seconds": t.seconds, "steps": t.steps, "ratio": None,
         "ratio_of": "", "peak_mib": None, "note": ""}
  row.update(extra)
  return row


def _hand_runner(name, batch, xla):
  """The hand-written step (`handwritten_tf`) of a no-flow package case."""
  config = synthetic.case_config(PACKAGE_OF[name], xla)
  spec = handwritten_spec.from_config(config, synthetic.INPUT_DIM,
                                      synthetic.NUM_CLASSES,
                                      train_examples=synthetic.BATCH_SIZE)
  return handwritten_tf.HandwrittenTFStep(_label(name, xla), spec, batch, xla,
                                          seed=int(config.seed))


def training_rows(train_names, hand_names, modes, s, workdir):
  """Package and hand-written training steps, all interleaved.

  Returns rows with ratios: flows vs vae_none, vae_none / vib_none vs the
  hand-written step, at the same XLA setting; XLA rows note on/off speed-up.
  """
  splits = synthetic.splits(synthetic.BATCH_SIZE, seed=0)
  runners, meta = [], {}
  for xla in modes:
    for name in train_names:
      label = _label(name, xla)
      logging.info("Building %s", label)
      runners.append(package_step.PackageStep(
          label, synthetic.case_config(name, xla), splits,
          os.path.join(workdir, f"{name}_{int(xla)}")))
      meta[label] = ("train", name, xla)
    batch = {"x": splits.train.x[:synthetic.BATCH_SIZE],
             "y": splits.train.y[:synthetic.BATCH_SIZE].astype("int32")}
    for name in hand_names:
      runners.append(_hand_runner(name, batch, xla))
      meta[_label(name, xla)] = ("hand", name, xla)
  logging.info("Timing %d training cases", len(runners))
  timings = timing.measure(runners, s["steps"], s["repeats"], s["warmup"])
  rows = {label: _row(*meta[label], t) for label, t in timings.items()}
  for row in rows.values():
    name, xla = row["case"], row["xla"]
    base = None
    if name in HAND_OF:
      base = HAND_OF[name]
    elif row["group"] == "train" and name != "vae_none" and name.startswith(
        "vae_"):
      base = "vae_none"
    if base and _label(base, xla) in rows:
      other = rows[_label(base, xla)]
      row["ratio"] = row["examples_per_second"] / other["examples_per_second"]
      row["ratio_of"] = base
    if xla and _label(name, False) in rows:
      speedup = row["examples_per_second"] / rows[_label(name, False)][
          "examples_per_second"]
      row["note"] = f"XLA on/off {speedup:.2f}x"
      row["xla_speedup"] = speedup
  return list(rows.values())


def pipeline_rows(xla, s, workdir):
  """vae_none fed by the trainer's tf.data vs one in-memory batch."""
  splits = synthetic.splits(s["pipeline_examples"], seed=1)
  inner = package_step.PackageStep(
      "vae_none in-memory", synthetic.case_config("vae_none", xla), splits,
      os.path.join(workdir, "pipeline"))
  fed = package_step.PipelineFedStep("vae_none tf.data", inner)
  runners = [inner, fed]
  timings = timing.measure(runners, s["steps"], s["repeats"], s["warmup"])
  memory_row = _row("pipeline", "vae_none in-memory", xla,
                    timings[inner.name])
  fed_row = _row("pipeline", "vae_none tf.data", xla, timings[fed.name])
  fed_row["ratio"] = (fed_row["examples_per_second"] /
                      memory_row["examples_per_second"])
  fed_row["ratio_of"] = "in-memory"
  fed_row["note"] = f"{s['pipeline_examples']} examples, {fed.epoch} new epochs"
  return [memory_row, fed_row]


def evaluation_rows(s):
  """IWAE log p(x) per K: examples/s, ms per call, peak RSS growth."""
  rows, first_of_chunk = [], {}
  for k in s["eval_ks"]:
    run = (evaluation.run_in_subprocess if s["eval_subprocess"]
           else evaluation.run_in_process)
    logging.info("Evaluation K=%d", k)
    r = run(k, s["eval_batch_size"], repeats=s["eval_repeats"])
    row = {"group": "eval", "case": f"iwae K={k}", "xla": None,
           "examples_per_second": r["examples_per_second"],
           "ms_per_step": 1e3 * r["seconds"], "spread": None,
           "peak_mib": r["peak_growth_mib"], "ratio": None, "ratio_of": "",
           "note": (f"B={r['batch_size']}, chunk {r['chunk_samples']} "
                    f"samples = {r['chunk_rows']} rows, "
                    f"{r['samples_per_second']:,.0f} samples/s"),
           "detail": r}
    same = first_of_chunk.setdefault(r["chunk_rows"], (k, r["peak_growth_mib"]))
    if same[0] != k:
      row["ratio"] = r["peak_growth_mib"] / max(same[1], 1e-9)
      row["ratio_of"] = f"peak at K={same[0]}"
    rows.append(row)
  return rows


def _find(rows, case, xla=None, group=None):
  for row in rows:
    if row["case"] == case and (xla is None or row["xla"] == xla) and (
        group is None or row["group"] == group):
      return row
  return None


# Throughput bounds: package / hand-written step, and flows / no flow.
STEP_TARGETS = {"vae_none": 0.95, "vib_none": 0.95, "vae_planar8": 0.90,
                "vae_planar32": 0.75}


def targets(rows):
  """The targets this run can judge: name, value, bound, met."""
  out = []
  for xla in (True, False):
    tag = "on" if xla else "off"
    for name, bound in STEP_TARGETS.items():
      row = _find(rows, name, xla, "train")
      if row and row["ratio"] is not None:
        out.append({"name": f"{name} / {row['ratio_of']} throughput, "
                            f"XLA {tag}",
                    "value": row["ratio"], "bound": f">= {bound}",
                    "met": row["ratio"] >= bound})
  for row in rows:
    if row["group"] == "run" and row["ratio"] is not None:
      tag = "on" if row["xla"] else "off"
      value = row.get("ratio_per_epoch", row["ratio"])
      out.append({"name": f"{row['case']} (XLA {tag}): JAX reference's "
                          "training seconds per epoch / its own",
                  "value": value, "bound": ">= 1.0", "met": value >= 1.0})
  row = _find(rows, "vae_none tf.data", group="pipeline")
  if row:
    out.append({"name": "tf.data-fed / in-memory throughput",
                "value": row["ratio"], "bound": ">= 0.95",
                "met": row["ratio"] >= 0.95})
  for row in rows:
    if row["group"] == "eval" and row["ratio"] is not None:
      out.append({"name": f"{row['case']} peak memory / {row['ratio_of']} "
                          "(same chunk)",
                  "value": row["ratio"], "bound": "<= 1.1",
                  "met": row["ratio"] <= 1.1})
  return out

"""The benchmark's table (Markdown) and JSON document.

A row is a dict with: case, group ("train", "hand", "pipeline", "eval"), xla
(bool or None), examples_per_second, ms_per_step (milliseconds per step or
per evaluation call), spread ((max - min) / median of the repeats), ratio and
ratio_of (what the ratio divides by), peak_mib (evaluation only) and note;
the MNIST-scale rows (`mnist`) also gflops (GFLOP/s of the step's GEMMs,
`flops`) and roofline (the fastest GEMM-alone row's time over this row's;
for the evaluation, the generator's FLOP bound over the time).
"""

import json

COLUMNS = (
    ("case", "case", "{}"),
    ("xla", "XLA", "{}"),
    ("examples_per_second", "examples/s", "{:,.0f}"),
    ("ms_per_step", "ms/step", "{:.2f}"),
    ("cpu_ms_per_step", "CPU ms/step", "{:.2f}"),
    ("spread", "spread", "{:.0%}"),
    ("ratio", "ratio", "{:.3f}"),
    ("ratio_of", "ratio of", "{}"),
    ("peak_mib", "peak MiB", "{:,.0f}"),
    ("seconds_per_run", "s/run", "{:.1f}"),
    ("seconds_per_epoch", "s/epoch", "{:.3f}"),
    ("gflops", "GFLOP/s", "{:.1f}"),
    ("roofline", "roofline", "{:.2f}"),
    ("note", "note", "{}"),
)


def _cell(row, key, fmt):
  value = row.get(key)
  if value is None or value == "":
    return ""
  if key == "xla":
    return "on" if value else "off"
  return fmt.format(value)


def table(rows):
  """Returns the rows as a Markdown table (a string)."""
  lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
           "|" + "|".join("---" for _ in COLUMNS) + "|"]
  for row in rows:
    cells = [_cell(row, key, fmt) for key, _, fmt in COLUMNS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def targets_text(targets):
  """One line per performance target: measured value, bound, met or not."""
  lines = []
  for t in targets:
    verdict = "met" if t["met"] else "MISSED"
    lines.append(f"- {t['name']}: {t['value']:.3f} (target {t['bound']}) "
                 f"{verdict}")
  return "\n".join(lines)


def devices():
  """The devices TensorFlow runs on here, e.g. ["/CPU:0"] or [..., "/GPU:0"]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return [d.name.replace("/physical_device:", "/")
          for d in tf.config.list_physical_devices()]


def write_json(path, document):
  """Writes the JSON document (machine, settings, rows, targets)."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(document, f, indent=2, sort_keys=True)
    f.write("\n")

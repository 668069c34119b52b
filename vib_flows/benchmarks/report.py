"""The benchmark's table (Markdown) and JSON document.

A row is a dict with: case, group ("train", "hand", "pipeline", "eval"), xla
(bool or None), examples_per_second, ms_per_step (milliseconds per step or
per evaluation call), spread ((max - min) / median of the repeats), ratio and
ratio_of (what the ratio divides by), peak_mib (evaluation only) and note.
"""

import json
import os
import platform

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


def machine():
  """What the numbers were measured on (CPU, cores, memory, versions, load)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [line.split(":", 1)[1].strip() for line in f
               if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  mem_gib = None
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      mem_gib = int(f.readline().split()[1]) / 1024**2
  except (OSError, ValueError, IndexError):
    pass
  return {
      "cpu": cpu, "logical_cpus": os.cpu_count(), "memory_gib": mem_gib,
      "python": platform.python_version(), "tensorflow": tf.__version__,
      "keras": keras.__version__, "tensorflow_probability": tfp.__version__,
      "gpus": len(tf.config.list_physical_devices("GPU")),
      "load_average": list(os.getloadavg()),
  }


def write_json(path, document):
  """Writes the JSON document (machine, settings, rows, targets)."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(document, f, indent=2, sort_keys=True)
    f.write("\n")

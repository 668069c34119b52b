"""Peak resident memory of this process (Linux /proc), in MiB.

`reset_peak()` clears the kernel's high-water mark (VmHWM) by writing "5" to
/proc/self/clear_refs (Linux >= 4.0), so `peak_mib()` afterwards is the peak
since the reset. Where that is refused, the peak is the lifetime
`resource.getrusage(...).ru_maxrss`, and growth measured from it can only be
over-stated, never hidden; `reset_peak` says which one applies.
(`tf.config.experimental.get_memory_info("CPU:0")` is not available: TF 2.21
raises "Allocator stats not available for device 'CPU:0'".)
"""

import resource

_MIB = 1024.0 * 1024.0


def _status_kib(field):
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise KeyError(field)


def rss_mib():
  """Current resident set size, MiB."""
  return _status_kib("VmRSS") * 1024 / _MIB


def reset_peak():
  """Resets the peak to the current RSS; False if refused (lifetime peak)."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def peak_mib():
  """Peak RSS since `reset_peak` (or since start), MiB."""
  try:
    return _status_kib("VmHWM") * 1024 / _MIB
  except (OSError, KeyError):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / _MIB

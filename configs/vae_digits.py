"""VAE with planar flows on the offline 8x8 digits: the README's main job.

The 'Deep Generative Modeling' book's digits setup (Tomczak 2022): 17-level
categorical likelihood, latent 16, hidden 256; split 1000/350/447. A few
minutes on 2 CPU cores.
"""

from vib_flows import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.flow.name = "planar"
  config.flow.num_flows = 4
  config.train.num_epochs = 100
  config.train.early_stopping_patience = 20
  # beta rises 0 -> 1 over the first 20 epochs (10 steps each), then early
  # stopping may count (patience 20 epochs).
  config.loss.warmup_steps = 200
  # A whole run is about 600 steps: compiling the step with XLA costs more
  # than it saves (measured with `python -m vib_flows.benchmark --cases=run`:
  # 52.9 s with XLA, 25.6 s without; docs/performance.md).
  config.train.jit_compile = False
  return config

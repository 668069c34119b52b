"""`python -m experiments.sweep`: the results sweeps (`experiments.sweeps`).

python -m experiments.sweep --sweep=vae_digits|vib_digits|iaf_digits \
      --workdir=DIR [--seeds=3] [--epochs=N] [--only=...] [--report_only]
"""

from experiments.sweeps import cli

if __name__ == "__main__":
  cli.run_main()

"""`python -m vib_flows.sweep`: the results sweeps (`vib_flows.sweeps`).

python -m vib_flows.sweep --sweep=vae_digits|vib_digits|iaf_digits \
      --workdir=DIR [--seeds=3] [--epochs=N] [--only=...] [--report_only]
"""

from vib_flows.sweeps import cli

if __name__ == "__main__":
  cli.run_main()

"""Mean and trace of the covariance of a random gradient, from chunks of draws.

For N draws g_1..g_N in R^P of one gradient estimator (one parameter group),

    mean     m   = (1/N) sum_n g_n                                    [P]
    M2           = sum_n (g_n - m)^2       (elementwise)              [P]
    tr Cov(g)    = sum_p M2_p / (N - 1)                  (unbiased)
    ||E g||^2   ~= ||m||^2 - tr Cov(g) / N  (E||m||^2 = ||E g||^2 + tr Cov / N)

Draws arrive in chunks (one vectorized call each); chunks are merged with the
pairwise update of Chan, Golub & LeVeque (1979), for chunks a and b:

    n = n_a + n_b,  d = m_b - m_a,  m = m_a + d n_b / n,
    M2 = M2_a + M2_b + d^2 n_a n_b / n,

so no sum of squares of uncentered values (which would cancel when the mean
is large against the spread) is ever formed. The standard error of the trace
is the spread of the per-chunk traces over sqrt(number of chunks).
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Moments:
  """Running moments of draws of one parameter group (float64).

  Attributes:
    count: N, draws so far.
    mean: [P] mean of the draws.
    m2: [P] sum of squared deviations from the mean.
    chunk_traces: per-chunk unbiased traces of the covariance (for the SE).
  """

  count: int = 0
  mean: np.ndarray | None = None
  m2: np.ndarray | None = None
  chunk_traces: list = dataclasses.field(default_factory=list)

  def add_chunk(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
    """Merges a chunk given by its size, mean [P] and centered M2 [P]."""
    if count < 2:
      raise ValueError(f"A chunk needs at least 2 draws, got {count}.")
    mean = np.asarray(mean, np.float64).ravel()
    m2 = np.asarray(m2, np.float64).ravel()
    if mean.shape != m2.shape:
      raise ValueError(f"mean {mean.shape} and m2 {m2.shape} differ in shape.")
    self.chunk_traces.append(float(m2.sum()) / (count - 1))
    if self.count == 0:
      self.count, self.mean, self.m2 = count, mean, m2
      return
    if mean.shape != self.mean.shape:
      raise ValueError(
          f"Chunk of {mean.shape[0]} parameters after chunks of "
          f"{self.mean.shape[0]}.")
    total = self.count + count
    delta = mean - self.mean
    self.mean = self.mean + delta * (count / total)
    self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
    self.count = total

  def add_draws(self, draws: np.ndarray) -> None:
    """Merges a chunk of raw draws [n, P]."""
    draws = np.asarray(draws, np.float64).reshape(draws.shape[0], -1)
    mean = draws.mean(0)
    self.add_chunk(draws.shape[0], mean, ((draws - mean)**2).sum(0))

  def summary(self) -> dict:
    """trace, trace_se, mean_norm (||E g||, bias-corrected) and draws N."""
    if self.count < 2:
      raise ValueError("No draws yet: call add_chunk first.")
    trace = float(self.m2.sum()) / (self.count - 1)
    k = len(self.chunk_traces)
    se = (float(np.std(self.chunk_traces, ddof=1)) / np.sqrt(k)
          if k > 1 else float("nan"))
    norm2 = float(self.mean @ self.mean) - trace / self.count
    return {"trace": trace, "trace_se": se,
            "mean_norm": float(np.sqrt(max(norm2, 0.0))),
            "draws": self.count, "num_parameters": int(self.mean.size)}

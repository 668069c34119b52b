"""The pictures of a run (`vib_flows.app.plots`).

Data as grey images in [0, 1] (levels divided by the top level), data that
are not images left out, and a grid of a row per `columns` images written
as a PNG with no temporary file left.
"""

import os
import struct
import types

import numpy as np

from vib_flows.app import plots


def _info(input_shape, preprocess="scale", num_levels=None):
  return types.SimpleNamespace(input_shape=input_shape, preprocess=preprocess,
                               num_levels=num_levels)


def test_data_become_grey_images_in_the_unit_interval():
  levels = np.arange(2 * 64).reshape(2, 64) % 17  # Digits: levels 0..16.
  images = plots.as_images(levels, _info((64,), "levels", 17))
  assert images.shape == (2, 8, 8)
  np.testing.assert_allclose(images[1], levels[1].reshape(8, 8) / 16)
  assert images.max() == 1.0
  mnist = np.random.default_rng(0).uniform(size=(3, 28, 28, 1))
  np.testing.assert_allclose(plots.as_images(mnist, _info((28, 28, 1))),
                             mnist[..., 0], rtol=1e-6)
  assert plots.as_images(np.zeros((2, 10)), _info((10,))) is None
  assert plots.as_images(np.zeros((2, 4, 4, 3)), _info((4, 4, 3))) is None


def _png_size(path):
  """(width, height) in pixels of the PNG file at `path`."""
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", data[16:24])  # The IHDR chunk's first fields.


def test_a_grid_is_a_png_of_a_row_per_columns_images(tmp_path):
  images = np.random.default_rng(1).uniform(size=(11, 8, 8))
  heights = {}
  for count in (1, 10, 11):
    path = tmp_path / "pictures" / f"{count}.png"
    plots.save_image_grid(images[:count], str(path), title="samples",
                          columns=5)
    heights[count] = _png_size(path)[1]
  # Rows of 5: 11 images take one row more than 10, which take two.
  assert heights[1] < heights[10] < heights[11]
  # Written atomically: no temporary file left.
  assert sorted(os.listdir(tmp_path / "pictures")) == [
      "1.png", "10.png", "11.png"]

"""vib_flows: VAEs and the variational information bottleneck with flows."""

import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).parent
# One source of truth for the version: vib_flows.__version__ (read, not
# imported: the dependencies may not be installed yet).
VERSION = re.search(
    r'^__version__ = "([^"]+)"$',
    (HERE / "vib_flows" / "__init__.py").read_text(encoding="utf-8"),
    flags=re.M,
).group(1)

setuptools.setup(
    name="vib_flows",
    version=VERSION,
    description=(
        "Variational autoencoders and the variational information bottleneck "
        "with normalizing-flow posteriors (Keras 3 / TensorFlow 2 / TFP)."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["vib_flows", "vib_flows.*"]),
    python_requires=">=3.10,<3.14",
    # Ranges tested together (see README). The CPU build of TensorFlow is the
    # default; `pip install -e .[and-cuda]` adds the NVIDIA GPU libraries.
    # The library (vib_flows.flows, distributions, networks, objectives,
    # models) imports only tensorflow, keras, tensorflow-probability, numpy
    # (tests/test_library_imports.py); the rest serves the application. All
    # stay required so that `pip install -e .` gives the whole application:
    # pip has no default extras (docs/design.md).
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-probability[tf]>=0.25,<0.26",
        "tensorflow-datasets>=4.9,<5",
        "absl-py>=2.1,<3",
        "ml-collections>=1.0,<2",
        "scikit-learn>=1.5,<2",
        "numpy>=1.26,<3",
        "matplotlib>=3.8,<4",
        # Protos of the TensorFlow Serving warm-up records written at export.
        "tensorflow-serving-api>=2.21,<2.22",
        "tensorboard>=2.20,<3",
        # tensorflow-datasets 4.9 prepares builders with it but does not
        # declare it.
        "importlib_resources>=6",
    ],
    extras_require={
        "and-cuda": ["tensorflow[and-cuda]>=2.21,<2.22"],
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            # The linter (Google Python style, ruff.toml) run by .ci/run.
            "ruff==0.17.6",  # Pinned: new releases add rules.
            # The type checker of the library (mypy.ini) run by .ci/run.
            "mypy==2.4.1",  # Pinned: new releases add checks.
            # The flows on the JAX backend (tests/test_backends.py).
            "jax[cpu]>=0.10,<0.11",
            # Property-based tests of the config checks, the data loader and
            # the command line (tests/test_fuzz.py).
            "hypothesis>=6.100,<7",
        ],
        # The documentation site and its API reference (mkdocs.yml), built by
        # .ci/run with `mkdocs build --strict`.
        "docs": [
            "mkdocs>=1.6,<2",
            "mkdocs-material>=9.5,<10",
            "mkdocstrings[python]>=0.26,<2",
        ],
    },
    entry_points={"console_scripts": ["vib-flows=vib_flows.main:run"]},
)

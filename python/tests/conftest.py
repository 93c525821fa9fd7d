"""Shared fixtures: the package from this checkout, fresh random inputs.

The tests import the ``attnc`` next to this folder (``python/attnc``)
unless ``ATTNC_TEST_INSTALLED=1`` asks for the installed one; libattn is
found as the package finds it (``ATTNC_LIBRARY``, else the checkout's
``build/lib``). Inputs are random with a fresh seed per run, printed in the
header; ``ATTNC_TEST_SEED=N`` repeats a run.
"""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if os.environ.get("ATTNC_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

SEED = int(os.environ.get("ATTNC_TEST_SEED") or
           int.from_bytes(os.urandom(4), "little"))


def pytest_report_header(config):
    import attnc
    return ["attnc from %s, libattn %s (%s)" % (
        os.path.dirname(attnc.__file__), attnc.library_path(), attnc.version()),
        "ATTNC_TEST_SEED=%d" % SEED]


@pytest.fixture
def rng(request):
    """A generator seeded from the run's seed and the test's name."""
    return np.random.default_rng([SEED, sum(map(ord, request.node.nodeid))])


@pytest.fixture(scope="session")
def examples():
    """The repository's examples folder."""
    return os.path.join(ROOT, "examples")

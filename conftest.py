"""
Make the test suite run against the working tree, not an installed copy.

The package is installed (non-editable) by C{make test} and C{.ci/run} so
that its console scripts and the C{twistd qemud} plugin exist; the source
directories are put first on C{sys.path} here, and exported in
C{PYTHONPATH} for the daemons and clients the integration tests spawn.
"""

import os
import sys
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCE_PATHS = [ROOT, os.path.join(ROOT, "clients")]

for path in reversed(SOURCE_PATHS):
    if path not in sys.path:
        sys.path.insert(0, path)

os.environ["PYTHONPATH"] = os.pathsep.join(
    SOURCE_PATHS + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


@pytest.fixture(autouse=True, scope="session")
def _scratch_working_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """
    Run the tests from a scratch directory: trial's C{mktemp()} makes paths
    relative to the working directory, which must not be the checkout.
    (A fixture, not a session hook: command-line paths such as C{--ignore}
    are resolved during collection, from the directory pytest started in.)
    """
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)

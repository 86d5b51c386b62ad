"""Coverage for the commands the tests run as subprocesses.

Under pytest-cov each child runs under `coverage run --parallel-mode`, writing its data
to a directory of this session's own; at the end of the session the files join the
parallel files pytest-cov combines into its report. Kept apart until then, they cannot
be erased or combined by another coverage run working in the same checkout.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import coverage
import pytest

from . import _support


@pytest.fixture(scope="session", autouse=True)
def _measure_children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the children's coverage data at a private directory; hand it over at the end."""
    cov = coverage.Coverage.current()
    if cov is None:
        yield
        return
    ours = Path(os.path.abspath(cov.config.data_file))
    private = tmp_path_factory.mktemp("child-coverage") / ours.name
    _support.child_coverage = _support.ChildCoverage(private, cov.config.config_file)
    try:
        yield
    finally:
        _support.child_coverage = None
        for data in private.parent.glob(f"{private.name}.*"):
            shutil.move(data, ours.with_name(data.name))

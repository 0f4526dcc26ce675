from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """The default bundle of tests/conftest.py's tiny run; tests that alter files work on a copy."""
    from edgekd.bundle.build import write_bundle

    return write_bundle(tiny_run, tmp_path_factory.mktemp("bundles") / "digits-bundle")

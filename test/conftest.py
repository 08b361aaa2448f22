"""Test-wide settings. Loaded by pytest before any test module, so before rclpy is imported.

Every test process (and every child it starts) keeps DDS on this host: the loopback Fast DDS
profile is forced and the domain id is private to this pytest run, whatever the caller's
environment says.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "vggt_spec" / "fixtures"

os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_local.xml")
os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)  # would replace the profile's transports
os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The official-code fixtures; they ship with the repo's sibling shared/ (also in CI)."""
    assert FIXTURES.is_dir(), f"fixtures missing: {FIXTURES} (tests must run, not skip)"
    return FIXTURES

"""Test-wide settings. Loaded by pytest before any test module, so before rclpy is imported.

Every test process (and every child it starts) keeps DDS on this host: the loopback Fast DDS
profile is forced and the domain id is private to this pytest run, whatever the caller's
environment says.
"""
import json
import os
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def small_config(fixtures_dir):
    """The fixture model's architecture (official key structure, 2.2 M parameters)."""
    from vggt_ros.model import VGGTConfig

    return VGGTConfig(**json.loads((fixtures_dir / "small_config.json").read_text()))


@pytest.fixture(scope="module")
def random_small_vggt(small_config):
    """A seeded random-weight model of the small config, one per test module.

    Random weights often give a ReLU'd FoV of 0 (an infinite focal length); the benchmark's
    random init raises the FoV outputs so every frame has a usable camera for geometric checks.
    """
    from vggt_ros.bench.models import random_model

    return random_model(small_config, seed=0, device=torch.device("cpu"))


@pytest.fixture(scope="session")
def mapping_dir(tmp_path_factory) -> Path:
    """The rendered sequence the mapper tests map (read only: rendered once per session)."""
    from synth_runs import (MAPPING_FRAMES, MAPPING_HEIGHT, MAPPING_SEED, MAPPING_WIDTH,
                            render)

    return render(tmp_path_factory.mktemp("mapping_sequence"), MAPPING_FRAMES, MAPPING_WIDTH,
                  MAPPING_HEIGHT, MAPPING_SEED)


@pytest.fixture()
def context():
    """A private rclpy context for one test (rclpy imported here, after the DDS settings)."""
    import rclpy
    from live_harness import context as new_context

    ctx = new_context()
    yield ctx
    rclpy.shutdown(context=ctx)

"""The robot install path: a colcon workspace build of this repo with the venv's ROS wheels."""
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a full colcon workspace build: minutes

REPO = Path(__file__).resolve().parents[1]


def test_colcon_workspace_build_installs_everything(tmp_path):
    result = subprocess.run(
        [str(REPO / "tools" / "colcon_check.sh"), str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "colcon install OK" in result.stdout

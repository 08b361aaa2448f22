#!/usr/bin/env bash
# The robot install path, checked with the venv's ROS wheels: copy the tracked tree into a
# fresh colcon workspace's src/, `colcon build`, source install/setup.bash, then check that the
# executables, launch file, config, generated interfaces and Python package come from install/.
# Usage: tools/colcon_check.sh [WORKSPACE_DIR]   (default: a temporary directory)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
V="$ROOT/.venv"
WS=${1:-$(mktemp -d)}
mkdir -p "$WS/src/vggt_ros"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$WS/src/vggt_ros")
export PATH="$V/bin:$PATH" CMAKE_PREFIX_PATH="$V" AMENT_PREFIX_PATH="$V"
cd "$WS"
colcon build --event-handlers console_cohesion- --cmake-args \
  -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF > "$WS/colcon.log" 2>&1 \
  || { cat "$WS/colcon.log"; echo "colcon build failed"; exit 1; }
set +u; source install/setup.bash; set -u
SHARE=install/vggt_ros/share/vggt_ros
for f in install/vggt_ros/lib/vggt_ros/vggt_node install/vggt_ros/lib/vggt_ros/vggt_map \
         $SHARE/launch/vggt.launch.py $SHARE/config/vggt.yaml $SHARE/package.xml \
         $SHARE/srv/TrackPoints.srv $SHARE/msg/PointTrack.msg; do
  [ -e "$f" ] || { echo "missing after colcon build: $f"; exit 1; }
done
# The installed package (not the source tree) must provide both our code and the interfaces.
(cd /tmp && python - <<PY
import vggt_ros, vggt_ros.srv, vggt_ros.msg, vggt_ros.pipeline.types
from ament_index_python.packages import get_package_share_directory
install = "$WS/install"
for mod in (vggt_ros.srv, vggt_ros.msg, vggt_ros.pipeline.types):
    assert mod.__file__.startswith(install), (mod.__name__, mod.__file__)
share = get_package_share_directory("vggt_ros")
assert share.startswith(install), share
from vggt_ros.srv import TrackPoints
TrackPoints.Request(u=[1.0], v=[2.0])
print("colcon install OK:", share)
PY
)

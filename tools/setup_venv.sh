#!/usr/bin/env bash
# Build the development virtual env in .venv: Python deps, ROS 2 Kilted wheels, and the
# generated interfaces (our vggt_ros msg/srv, plus a stand-in tf2_msgs when the real one is
# missing). Idempotent: every step leaves a stamp and is skipped when its inputs are unchanged.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
V="$ROOT/.venv"
PY=${PYTHON:-python3}
stamp() { echo "$V/.stamp-$1"; }
fresh() { # fresh NAME FILES... : true when the stamp is newer than every input
  local s; s=$(stamp "$1"); shift
  [ -f "$s" ] || return 1
  for f in "$@"; do [ "$f" -nt "$s" ] && return 1; done
  return 0
}

if [ ! -x "$V/bin/python" ]; then
  echo "[setup] creating $V"
  "$PY" -m venv "$V"
fi

if ! fresh deps "$ROOT/tools/requirements.txt" "$ROOT/tools/setup_venv.sh"; then
  echo "[setup] installing Python and ROS 2 wheels (first run: a few minutes)"
  # (the machine's pip config lists local mirrors that lack most packages: hide that noise)
  "$V/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tools/requirements.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  # The ROS wheels were built in manylinux and hard-code that interpreter's include dirs
  # in their exported CMake files; point them at this interpreter.
  PYINC=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  NPINC=$("$V/bin/python" -c "import numpy; print(numpy.get_include())")
  { grep -rl "/opt/python/cp311-cp311/" "$V/share" --include='*.cmake' || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
  touch "$(stamp deps)"
fi

build_interfaces() { # build_interfaces SRC_DIR NAME
  local b; b=$(mktemp -d)
  echo "[setup] generating interfaces: $2"
  if ! { cmake -S "$1" -B "$b" -DCMAKE_PREFIX_PATH="$V" -DCMAKE_INSTALL_PREFIX="$V" \
          -DPython3_EXECUTABLE="$V/bin/python" -DBUILD_TESTING=OFF "${@:3}" &&
        cmake --build "$b" -j"$(nproc)" && cmake --install "$b"; } > "$b/log" 2>&1; then
    cat "$b/log"; echo "[setup] interface build of $2 failed"; exit 1
  fi
  rm -rf "$b"
}

# tf2_msgs: only where no real one exists (a sourced ROS install provides it).
if ! "$V/bin/python" -c "import tf2_msgs.msg" 2>/dev/null; then
  build_interfaces "$ROOT/tools/tf2_msgs_standin" tf2_msgs
fi

# Our interfaces are generated from the package's own CMakeLists.txt. Their Python part
# is moved out of site-packages (where it would shadow the source tree's vggt_ros) into
# $V/generated, which a .pth file puts on sys.path after the source tree;
# vggt_ros/__init__.py merges both directories into one package (pkgutil.extend_path).
# The .pth files name absolute paths, so a venv whose checkout moved (or that another checkout
# re-pointed) is rebuilt here even when its stamps are fresh.
SITE=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if ! fresh interfaces "$ROOT"/msg/* "$ROOT"/srv/* "$ROOT/CMakeLists.txt" ||
   [ "$(cat "$SITE/zz_vggt_ros_generated.pth" 2>/dev/null)" != "$V/generated" ]; then
  build_interfaces "$ROOT" vggt_ros -DVGGT_ROS_INTERFACES_ONLY=ON
  rm -rf "$V/generated/vggt_ros"; mkdir -p "$V/generated"
  mv "$SITE/vggt_ros" "$V/generated/vggt_ros"
  echo "$V/generated" > "$SITE/zz_vggt_ros_generated.pth"
  touch "$(stamp interfaces)"
fi

if ! fresh package "$ROOT/setup.py" ||
   ! cat "$SITE"/__editable__.vggt_ros-*.pth 2>/dev/null | grep -qxF "$ROOT"; then
  echo "[setup] installing vggt_ros in editable mode"
  "$V/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e "$ROOT" --config-settings editable_mode=compat
  touch "$(stamp package)"
fi

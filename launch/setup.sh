#!/usr/bin/env bash
# Installs what robolearn needs on a fresh Debian machine: system libraries, then the project with its
# dev extra. Safe to run again: already-present packages are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  libusb-1.0-0            # pyrealsense2 fails to import without it
  libegl1 libgl1 libgles2 libgl1-mesa-dri   # headless MuJoCo rendering (MUJOCO_GL=egl, Mesa llvmpipe)
  libglib2.0-0            # opencv-python
  ffmpeg                  # mp4 writing fallback for imageio
)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Quick when everything is already there; on a fresh machine torch alone is a few minutes.
"${PYTHON:-python3}" -m pip install --disable-pip-version-check --root-user-action=ignore -q -e ".[dev]"

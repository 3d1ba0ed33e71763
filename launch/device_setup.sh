#!/usr/bin/env bash
# Sourced by launch/device_*.sh on a lent GPU machine: unpacks the carried EGL libraries, installs the
# carried wheels, and points Python at them (see launch/device_pixel_run.sh for what is carried).
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/.gpu_site:/tmp/site:$PWD MUJOCO_GL=egl PYOPENGL_PLATFORM=egl PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"

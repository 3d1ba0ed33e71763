#!/usr/bin/env bash
# Run here (not on the GPU machine) before launch/device_pixel_run.sh or launch/device_learner_check.sh:
# builds the three git-ignored folders those scripts carry to a lent GPU machine, which has torch and
# Python 3.12 but none of our other dependencies and no network.
#   .whl/       cp312 manylinux wheels of what the sim and transport need (torch, numpy, scipy, lxml,
#               absl, protobuf, msgpack, opencv, tensorboard, tqdm are already on that machine)
#   .gpu_site/  dm_control reduced to what `dm_control.mjcf` needs (the whole wheel is 56 MB; a call
#               may carry 64 MB in all)
#   .gl/        Debian's glvnd EGL/OpenGL loader packages (MuJoCo renders through EGL on the NVIDIA driver)
# Then call the device tool with carry [".whl", ".gpu_site", ".gl"].
set -euo pipefail
cd "$(dirname "$0")/.."
for path in /.whl/ /.gpu_site/ /.gl/; do
  grep -qx "$path" .git/info/exclude || echo "$path" >> .git/info/exclude
done

rm -rf .whl .gpu_site .gl
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  --platform any -d .whl mujoco==3.17.0 dm-env dm-tree gymnasium==1.4.0 farama-notifications hydra-core==1.3.8 \
  omegaconf==2.3.1 pyzmq==27.3.0 pyopengl glfw
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # published as a source package only

# dm_control without its suites, locomotion assets, composer and tests: `mjcf` and what it imports.
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" dm-control==1.0.50
mkdir .gpu_site
(cd .gpu_site && python3 -m zipfile -e "$tmp"/dm_control-*.whl .)
rm -rf .gpu_site/dm_control-*.dist-info "$tmp"
(cd .gpu_site/dm_control && rm -rf locomotion suite blender manipulation composer entities viewer mujoco/testing mjcf/test_assets)
find .gpu_site -name "*_test.py" -delete

mkdir .gl
lists=$(mktemp -d)
mkdir -p "$lists/partial"
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
apt-get "${apt_opts[@]}" update -qq
(cd .gl && apt-get "${apt_opts[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
rm -rf "$lists"
du -sh .whl .gpu_site .gl

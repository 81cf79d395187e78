#!/usr/bin/env bash
# Installs what `--features mpi` needs, from Debian's packages: OpenMPI (mpirun and the
# library), and libclang for the bindings' build (bindgen). Idempotent: nothing to do when
# mpirun, mpicc and libclang are there.
set -euo pipefail
have_libclang() { ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; }
if command -v mpirun >/dev/null && command -v mpicc >/dev/null && have_libclang; then
  exit 0
fi
packages="openmpi-bin libopenmpi-dev libclang-dev"
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
echo "setup-mpi: installing $packages" >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $packages >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $packages >/dev/null
}

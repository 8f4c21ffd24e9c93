#!/usr/bin/env bash
# Installs the system packages the grid needs, when they are missing.
# Debian 12; needs root (or sudo) only when something has to be installed.
set -euo pipefail

packages=()
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
command -v firefox-esr >/dev/null || packages+=(firefox-esr)
command -v python3 >/dev/null || packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
command -v make >/dev/null || packages+=(make)
# The Docker provisioner's tests run their own engine and build the node
# image from a debootstrapped base (no registry is needed).
command -v dockerd >/dev/null || packages+=(docker.io)
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v docker-compose >/dev/null || packages+=(docker-compose)

if [ "${#packages[@]}" -eq 0 ]; then
  exit 0
fi

echo "installing system packages: ${packages[*]}"
run_as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "run as root, or install: apt-get install ${packages[*]}" >&2
    exit 1
  fi
  run_as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${run_as_root[@]}" apt-get update -q
"${run_as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"

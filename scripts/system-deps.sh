#!/usr/bin/env bash
# Install the system packages the browser tests need (Debian's chromium and chromium-driver),
# only when they are missing; never a download at test time. Used by `make system-deps`.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "chromium and chromedriver are installed."
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "Run as root, or install sudo, to install chromium." >&2; exit 1; }
  SUDO="sudo"
fi

echo "Installing chromium and chromium-driver..."
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version
/usr/bin/chromedriver --version

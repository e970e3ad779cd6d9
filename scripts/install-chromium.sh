#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages `chromium`, `chromium-driver`)
# for the browser tests (tests/e2e/browser.py). Does nothing when both are on PATH already.
#
# Needs root (or sudo) and apt-get. Exit codes: 0 installed or present, 3 cannot install here
# (not root, or no apt-get), anything else: apt-get failed. Concurrent runs wait for each other.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if { have chromium || have chromium-browser; } && have chromedriver; then
    exit 0
fi
if ! have apt-get; then
    echo "install-chromium: no apt-get on this machine; install Chromium and chromedriver by hand" >&2
    exit 3
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install-chromium: needs root: run \`sudo $0\`" >&2
        exit 3
    fi
fi

export DEBIAN_FRONTEND=noninteractive
lock=/tmp/genfair-install-chromium.lock
exec 9>"$lock"
flock -w 900 9   # another test session may be installing right now
if { have chromium || have chromium-browser; } && have chromedriver; then
    exit 0
fi
echo "install-chromium: apt-get install chromium chromium-driver (a minute or two)"
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium chromium-driver

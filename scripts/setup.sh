#!/usr/bin/env bash
# Installs the Debian packages ioclab needs to build, run and test, when
# missing. Idempotent and quiet: on a prepared machine it does nothing.
# Run as root on Debian 12 (bookworm) or later; `make run` and `make test`
# call it for you.
set -euo pipefail

# clang compiles the eBPF programs: the newest Debian offers, 19 on bookworm.
CLANG_CANDIDATES=(clang-19 clang-18 clang-17 clang-16 clang-15 clang-14)
PACKAGES=(
  libbpf-dev     # bpf_helpers.h, bpf_core_read.h for the eBPF C programs
  linux-libc-dev # <linux/bpf.h> and the uapi headers
  make
  gcc            # build scripts of some crates
  pkg-config
  gzip
  dnsutils       # dig, for the network tests
  curl           # HTTP client of the network tests
  util-linux     # unshare: the tests give curl its own resolv.conf
  python3        # PyMISP and misp-to-kunai, run by the MISP tests
  python3-venv
  procps         # ps, pgrep for the tests
  iproute2       # ip: the sandbox's network namespace (loopback, local route for every address)
  openssl        # a TLS listener with a self-signed certificate (MISP client diagnosis tests)
  chromium        # the headless browser of the web UI's end-to-end tests
  chromium-driver # chromedriver: the WebDriver server those tests drive it through
  shellcheck      # `make test` lints scripts/*.sh and scripts/vagrant/*.sh
  vagrant         # `make test` runs `vagrant validate` on the Vagrantfile (no provider, no box)
  systemd         # systemd-analyze: `make test` verifies the unit `ioclab install --systemd` writes
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

updated=0
apt_update() {
  if [ "$updated" = 0 ]; then
    apt-get update -qq >/dev/null
    updated=1
  fi
}

if [ "$(id -u)" != 0 ]; then
  echo "scripts/setup.sh: run as root (it installs Debian packages with apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

clang_ok=0
for c in "${CLANG_CANDIDATES[@]}"; do
  if installed "$c"; then clang_ok=1; break; fi
done
if [ "$clang_ok" = 0 ]; then
  apt_update
  for c in "${CLANG_CANDIDATES[@]}"; do
    if apt-cache show "$c" >/dev/null 2>&1; then missing+=("$c"); clang_ok=1; break; fi
  done
  if [ "$clang_ok" = 0 ]; then
    echo "scripts/setup.sh: no clang package (clang-14 to clang-19) in the apt sources" >&2
    exit 1
  fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/setup.sh: cargo (Rust 1.85 or later) is missing: install it with rustup (https://rustup.rs)" >&2
  exit 1
fi

# The real MISP clients, from PyPI, for the compatibility tests and the
# export benchmark: PyMISP and pykunai (misp-to-kunai), pinned.
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
PY_PACKAGES=(pymisp==2.5.34 pykunai==0.1.14 psutil==7.2.2)
# misp-modules' Cuckoo modules (the sandbox tests' real clients), without the
# libraries of its hundreds of other modules: cuckoo_submit needs requests
# (from pymisp), cuckooimport pymisp, and the package's __init__ psutil.
PY_NODEPS=(misp-modules==3.1.1)
if [ ! -x "$VENV/bin/misp-to-kunai" ] \
  || ! "$VENV/bin/python" -c "import pymisp, psutil, misp_modules.modules.import_mod.cuckooimport" >/dev/null 2>&1; then
  echo "setup: creating $VENV with ${PY_PACKAGES[*]} ${PY_NODEPS[*]}" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "${PY_NODEPS[@]}"
fi

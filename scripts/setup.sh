#!/usr/bin/env bash
# Set up what the tests, the demo and the benchmarks need, on Debian or Ubuntu with Rust
# and Python 3 already present. Idempotent and quiet: when everything is in place it
# prints nothing and takes well under a second.
#
# - Debian packages: prometheus (promtool), prometheus-alertmanager (amtool), faketime
#   (libfaketimeMT.so.1), systemd (systemd-analyze), make, a C compiler, and python3-venv
#   when `python3 -m venv` cannot work. `apt-get update` runs once, and only when something
#   is missing; sudo is used when not root.
# - The project venv .venv with moto[server] (it brings boto3, PyYAML and cfn-lint), from
#   scripts/requirements.txt; re-installed only when that file changes (stamp file).
# - rustfmt and clippy (for `make lint`), through rustup when they are missing.
#
# Environment: PYTHON (default python3) makes the venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
REQUIREMENTS=scripts/requirements.txt
VENV=.venv
STAMP=$VENV/.iam-warden-setup

LOG=$(mktemp "${TMPDIR:-/tmp}/iam-warden-setup.XXXXXX")
trap 'rm -f "$LOG"' EXIT

say() { echo "setup: $*" >&2; }
die() {
    echo "setup: error: $*" >&2
    exit 1
}
# run WHAT CMD...: run quietly; on failure show the output and stop.
run() {
    local what=$1
    shift
    if ! "$@" >"$LOG" 2>&1; then
        echo "setup: error: $what failed: $*" >&2
        tail -n 40 "$LOG" | sed 's/^/  | /' >&2
        exit 1
    fi
}

# ---- Rust -----------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 ||
    die "cargo is not installed: install Rust with rustup (https://rustup.rs), then re-run"
for component in rustfmt clippy; do
    sub=$component
    [ "$component" = rustfmt ] && sub=fmt
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 ||
            die "cargo $sub is missing and there is no rustup to add it: install the $component component of your Rust toolchain"
        say "adding the Rust component $component"
        run "rustup component add $component" rustup component add "$component"
    fi
done

# ---- Debian packages ------------------------------------------------------------------
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_cmd promtool prometheus
need_cmd amtool prometheus-alertmanager
need_cmd systemd-analyze systemd
need_cmd make make
need_cmd cc gcc
faketime_found=0
for dir in /usr/lib/x86_64-linux-gnu/faketime /usr/lib/aarch64-linux-gnu/faketime /usr/lib/faketime; do
    [ -e "$dir/libfaketimeMT.so.1" ] && faketime_found=1
done
[ "$faketime_found" = 1 ] || missing+=(faketime)
command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$PYTHON is not installed: install Python 3.9 or newer (Debian: apt-get install python3 python3-venv)"
# venv needs ensurepip, which Debian ships in python3-venv (not needed once .venv exists).
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 ||
        die "missing: ${missing[*]} (Debian package names); this is not a Debian/Ubuntu system, install them yourself"
    SUDO=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "missing Debian packages ${missing[*]}; not root and no sudo: run apt-get install ${missing[*]} as root"
        SUDO=(sudo)
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run "apt-get update" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run "apt-get install" "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    hash -r
    for c in promtool amtool systemd-analyze make cc; do
        command -v "$c" >/dev/null 2>&1 || die "$c is still missing after apt-get install"
    done
fi

# ---- Python venv ----------------------------------------------------------------------
[ -f "$REQUIREMENTS" ] || die "$REQUIREMENTS is missing"
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "$VENV is broken (its Python does not run); re-creating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the Python venv $VENV"
    run "creating $VENV" "$PYTHON" -m venv "$VENV"
fi
want="$(cat "$REQUIREMENTS")
python $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    say "installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into $VENV (about 20 s)"
    run "pip install" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        --no-input -r "$REQUIREMENTS"
    run "checking the venv" "$VENV/bin/python" -c \
        'import moto.server, boto3, yaml, cfnlint.runner'
    printf '%s' "$want" >"$STAMP"
fi

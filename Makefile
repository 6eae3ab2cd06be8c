# iam-warden developer entry points. `make demo` and `make test` work on a fresh
# Debian/Ubuntu machine with Rust and Python 3: both run scripts/setup.sh first.

SHELL := /bin/bash
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help setup build lint test fuzz demo bench bench-audit bench-enforce bench-daemon bench-custodian bench-faults bench-burst bench-impact bench-prowler bench-org clean-state

help:
	@echo "make demo         set up, then run the demo against a local AWS emulator (moto)"
	@echo "make test         set up, lint (rustfmt, clippy), then the whole cargo test suite"
	@echo "make lint         cargo fmt --check and clippy -D warnings"
	@echo "make fuzz         the property-based fuzz tests, 1,000,000 cases per target (optimised build)"
	@echo "make bench        benchmarks (release build): audit, enforce, daemon, custodian, faults,"
	@echo "                  burst, impact; figures in README (each alone: make bench-NAME)"
	@echo "make bench-prowler CIS verdicts next to Prowler's on one moto account (installs Prowler)"
	@echo "make bench-org    audit of an emulated organization (ACCOUNTS=100 USERS=100; minutes of seeding)"
	@echo "make setup        only the set-up (Debian packages, .venv with moto)"
	@echo "make clean-state  remove benchmark results and leftovers of interrupted runs"

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --locked --bins

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

test: setup lint
	$(CARGO) test --all-targets --locked --no-fail-fast

# `make test` runs the same targets with 10,000 cases each (debug build). Override the count
# with WARDEN_FUZZ_CASES=...; failing seeds are saved under proptest-regressions/.
FUZZ_CASES ?= 1000000
fuzz:
	WARDEN_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --locked --profile fuzz --test fuzz --test fuzz_env

demo: setup
	@bash scripts/demo.sh

bench: setup bench-audit bench-enforce bench-daemon bench-custodian bench-faults bench-burst bench-impact

bench-audit: setup
	@bash bench/audit.sh

bench-enforce: setup
	@bash bench/enforce.sh

bench-daemon: setup
	@bash bench/daemon.sh

bench-custodian: setup
	@bash bench/custodian.sh

bench-faults: setup
	@bash bench/faults.sh

bench-burst: setup
	@bash bench/burst.sh

bench-impact: setup
	@bash bench/impact.sh

# Not part of `make bench`: seeds ACCOUNTS x USERS users into moto first (minutes).
bench-org: setup
	@bash bench/org.sh

# Not part of `make bench`: installs Prowler from PyPI (minutes) into state/prowler-venv.
bench-prowler: setup
	@bash bench/prowler.sh

clean-state:
	rm -rf state/
	rm -rf $${TMPDIR:-/tmp}/iam-warden-demo.* $${TMPDIR:-/tmp}/iam-warden-bench-*.*

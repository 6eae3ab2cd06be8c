//! The integration tests, one module per file, in one test binary (`cargo test --test
//! integration`; one area: `cargo test --test integration daemon::`). One binary instead of
//! one per file: each binary links the whole AWS SDK, and in one binary the slow tests that
//! mostly wait (daemons at their due times, crash and fault runs) overlap with the others.
//! The shared moto server (`support::shared_moto`) is started once for all of them; each
//! test still makes its own fresh account. `fuzz` and `fuzz_env` are binaries of their own.

mod support;

mod audit;
mod cis;
mod cli;
mod convergence;
mod daemon;
mod deploy;
mod enforce;
mod faults;
mod http;
mod impact;
mod notify;
mod prometheus;
mod recorder;
mod rotation;
mod rotation_daemon;
mod securityhub;
mod sources;

//! The integration tests, one module per file, in one test binary (`cargo test --test
//! integration`; one area: `cargo test --test integration daemon::`). One binary instead of
//! one per file: each binary links the whole AWS SDK, and in one binary the slow tests that
//! mostly wait (daemons at their due times, crash and fault runs) overlap with the others.
//! The shared moto server (`support::shared_moto`) is started once for all of them; each
//! test still makes its own fresh account. `fuzz` and `fuzz_env` are binaries of their own.
//!
//! Tests start in the order of their names, two at a time (one per core): a test that
//! waits long (`daemon_rotation::the_daemon_takes_a_key_through_every_phase`, about 100 s
//! of due times) belongs in a module whose name sorts early, or it runs alone at the end.

mod support;

mod audit;
mod cis;
mod cli;
mod convergence;
mod daemon;
mod daemon_org;
mod daemon_rotation;
mod deploy;
mod enforce;
mod faults;
mod http;
mod impact;
mod notify;
mod org;
mod prometheus;
mod recorder;
mod rotation;
mod securityhub;
mod sources;

//! Property-based fuzzing of the configuration loader with `IAM_WARDEN_*` environment
//! overrides (and a TOML file under them): the real [`Config::load`], which reads the
//! process environment.
//!
//! It sets and removes environment variables, so it is a test binary of its own with a
//! single test: no other thread of this process reads the environment meanwhile (cargo runs
//! test binaries one after another). Cases: a fifth of `WARDEN_FUZZ_CASES` (default 10,000),
//! since each case loads the configuration up to three times.

use std::path::Path;

use iam_warden::config::Config;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm, TestRunner};

const PREFIX: &str = "IAM_WARDEN_";

fn cases() -> u32 {
    match std::env::var("WARDEN_FUZZ_CASES") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            panic!("WARDEN_FUZZ_CASES = {s:?} is not a whole number of cases; unset it or write e.g. 10000")
        }),
        Err(_) => 10_000,
    }
}

/// Removes every `IAM_WARDEN_*` variable.
fn clear_prefixed() {
    let names: Vec<_> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_string_lossy().to_ascii_uppercase().starts_with(PREFIX))
        .collect();
    for k in names {
        std::env::remove_var(k);
    }
}

/// Every configuration key as a path, with its default rendered as an environment value.
fn leaves() -> Vec<(Vec<String>, String)> {
    fn walk(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    path.push(k.clone());
                    walk(x, path, out);
                    path.pop();
                }
            }
            toml::Value::String(s) => out.push((path.clone(), s.clone())),
            other => out.push((path.clone(), other.to_string())),
        }
    }
    let defaults = toml::Value::try_from(Config::default()).expect("defaults as TOML");
    let mut out = Vec::new();
    walk(&defaults, &mut Vec::new(), &mut out);
    out
}

/// A variable name: a known key in upper, lower or mixed case, a known section with an
/// unknown key, the variables that are not configuration, or malformed names.
fn var_name(leaves: &[(Vec<String>, String)]) -> BoxedStrategy<(String, bool)> {
    let known: Vec<Vec<String>> = leaves.iter().map(|(p, _)| p.clone()).collect();
    let key =
        (prop::sample::select(known), 0u8..8, "[A-Za-z_.]{0,12}").prop_map(|(path, kind, junk)| {
            let joined = path.join("__");
            match kind {
                0..=2 => (joined.to_ascii_uppercase(), true),
                3 => (joined, true),
                4 => {
                    let mut p = path;
                    p.pop();
                    p.push(junk);
                    (p.join("__"), false)
                }
                5 => (format!("{joined}__{junk}"), false),
                6 => (joined.replace("__", "."), false),
                _ => (junk, false),
            }
        });
    prop_oneof![
        8 => key,
        1 => prop::sample::select(vec!["CONFIG", "LOG", "LOG_FORMAT", "", "__", "AWS__", "__AWS"])
            .prop_map(|k| (k.to_owned(), false)),
    ]
    .prop_map(|(k, known)| (format!("{PREFIX}{k}"), known))
    .boxed()
}

/// A value: the key's default, or anything figment's value parser may meet.
fn var_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => "[ -<>-~]{0,16}",
        1 => (-5i64..5000).prop_map(|n| n.to_string()),
        1 => (0u64..20_000, prop::sample::select(vec!["", "s", "m", "h", "d", "x"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        1 => prop::sample::select(vec![
            "true", "false", "enforce", "dry-run", "user", "group", "[\"iam:GetUser\"]",
            "[1, 2", "{a = 1}", "{", "[", "\"", "1.5", "nan", "inf", "-0", "[\"192.0.2.0/24\"]",
            "127.0.0.1:9464", "http://localhost:1", "99999999999999999999", " ", "\u{7f}",
            "a\nb", "é",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

#[test]
fn environment_overrides() {
    // A case loads the configuration two or three times (figment in a debug build: about
    // a millisecond each): a fifth of the cases of tests/fuzz.rs.
    let cases = (cases() / 5).max(1);
    clear_prefixed();
    let leaves = leaves();
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("iam-warden.toml");
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz_env.txt",
        ))),
        rng_algorithm: RngAlgorithm::XorShift,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    });
    let defaults: Vec<(String, String)> = leaves
        .iter()
        .map(|(p, v)| {
            (
                format!("{PREFIX}{}", p.join("__").to_ascii_uppercase()),
                v.clone(),
            )
        })
        .collect();
    let strategy = (
        prop::collection::vec(
            (
                var_name(&leaves),
                prop_oneof![Just(None), var_value().prop_map(Some)],
            ),
            0..6,
        ),
        prop::option::of(prop_oneof![
            Just("mode = \"dry-run\"\n".to_owned()),
            Just("[resync]\ninterval = \"5m\"\n".to_owned()),
            "[ -~\n]{0,40}",
        ]),
        prop::sample::subsequence(defaults, 0..4),
        (10u64..=10_080, 1u32..=64),
    );
    let result = runner.run(
        &strategy,
        |(vars, toml, explicit_defaults, (minutes, workers))| {
            clear_prefixed();
            let path = match &toml {
                Some(text) => {
                    std::fs::write(&file, text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    Some(file.as_path())
                }
                None => None,
            };
            // 1. Any variables: an error of one line, or a valid configuration that round-trips.
            for ((name, _), value) in &vars {
                // An empty value where the generator gave none.
                let value = value.clone().unwrap_or_default();
                if !name.contains(['=', '\0']) && !value.contains('\0') {
                    std::env::set_var(name, value);
                }
            }
            check(path, Config::load(path))?;

            // 2. The defaults spelt out as variables are the defaults.
            if toml.is_none() {
                clear_prefixed();
                for (k, v) in &explicit_defaults {
                    std::env::set_var(k, v);
                }
                let r = Config::load(None);
                prop_assert_eq!(
                    r.as_ref().ok(),
                    Some(&Config::default()),
                    "{:?}: {:?}",
                    explicit_defaults,
                    r.as_ref().err().map(ToString::to_string)
                );
            }

            // 3. A valid override is applied, whatever the case of its name.
            clear_prefixed();
            std::env::set_var("IAM_WARDEN_RESYNC__INTERVAL", format!("{minutes}m"));
            std::env::set_var("iam_warden_controller__workers", workers.to_string());
            match Config::load(None) {
                Ok(cfg) => {
                    prop_assert_eq!(cfg.resync.interval.get().as_secs(), minutes * 60);
                    prop_assert_eq!(cfg.controller.workers, workers);
                }
                Err(e) => prop_assert!(false, "valid overrides rejected: {}", e),
            }
            clear_prefixed();
            Ok(())
        },
    );
    clear_prefixed();
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn check(path: Option<&Path>, r: iam_warden::Result<Config>) -> Result<(), TestCaseError> {
    match r {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !msg.contains(['\n', '\r']),
                "message is not one line: {:?}",
                msg
            );
            prop_assert!(msg.starts_with("invalid configuration: "), "{}", msg);
        }
        Ok(cfg) => {
            prop_assert!(
                cfg.validate().is_ok(),
                "accepted an invalid config ({:?})",
                path
            );
            let rendered = cfg
                .to_toml()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Config::from_toml_str(&rendered).ok(), Some(cfg));
        }
    }
    Ok(())
}

//! Loading: built-in defaults, then the TOML file, then `IAM_WARDEN_*` environment
//! variables, through figment; figment's errors described on one line each.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

use super::Config;
use crate::error::{Error, Result};

/// Environment variables with the prefix that are not configuration keys.
const ENV_NOT_CONFIG: &[&str] = &["config", "log", "log_format"];
impl Config {
    /// Defaults, then `file` (which must exist when given), then `IAM_WARDEN_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "config file {} does not exist or is not a file; pass an existing TOML file to --config (see config/iam-warden.toml)",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(
            Env::prefixed("IAM_WARDEN_")
                .ignore(ENV_NOT_CONFIG)
                .split("__")
                .lowercase(true),
        );
        Self::from_figment(fig)
    }

    /// Parse a TOML string on top of the defaults (no environment); for tests and tools.
    pub fn from_toml_str(s: &str) -> Result<Config> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(s)),
        )
    }

    fn from_figment(fig: Figment) -> Result<Config> {
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| describe_figment_error(&e)).collect();
            Error::Config(msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::Config(format!("cannot render config: {e}")))
    }
}

/// One line per error: keys, values and file names are quoted with their control
/// characters escaped, and a TOML syntax error keeps its position and complaint but not the
/// quoted source lines under it.
fn describe_figment_error(e: &figment::Error) -> String {
    let key = if e.path.is_empty() {
        String::new()
    } else {
        format!("key `{}`: ", escape_controls(&e.path.join(".")))
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!(" (from {})", escape_controls(&src.to_string())),
            None => format!(" (from {})", escape_controls(&m.name)),
        })
        .unwrap_or_default();
    let kind = match &e.kind {
        figment::error::Kind::UnknownField(f, allowed) => format!(
            "unknown key `{}`; allowed keys here: {}",
            escape_controls(f),
            allowed.join(", ")
        ),
        other => one_line(&other.to_string()),
    };
    format!("{key}{kind}{source}")
}

/// `s` with control characters (line breaks included) escaped as `\n`, `\u{1b}`, ...
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A multi-line message on one line. The toml crate writes a syntax error as
/// `TOML parse error at line 2, column 2`, the source line with a marker (`2 | a`,
/// `  |  ^`), then the complaint; the source lines are left out.
fn one_line(msg: &str) -> String {
    let is_source_line = |l: &str| {
        l.starts_with('|')
            || l.split_once(" |")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    let parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_source_line(l))
        .collect();
    escape_controls(&parts.join(": "))
}

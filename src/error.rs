//! Library errors. Every variant says, on one line, what went wrong and how to fix it.
//! The SDK's full report of an AWS error (nested debug structures) is kept apart, in
//! [`Error::detail`], for `--verbose`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),

    /// An AWS call failed. `message` is the root cause in words, `hint` what to do about it.
    #[error("AWS {service} {operation} failed: {message}{}", hint_suffix(.hint))]
    Aws {
        service: &'static str,
        operation: &'static str,
        /// The AWS error code (e.g. `NoSuchEntity`, `Throttling`), when AWS sent one.
        code: Option<String>,
        message: String,
        hint: Option<&'static str>,
        /// The SDK's full report (every cause, with debug structures): not displayed.
        detail: Box<str>,
        /// The call may have been applied although it failed (5xx, lost or unreadable
        /// answer, timeout): re-read before repeating a write that is not harmless twice.
        ambiguous: bool,
    },

    #[error("the credential report could not be read: {0}")]
    CredentialReport(String),

    #[error("policy document {name} is {len} characters; IAM allows at most 6144 for a managed policy: shorten baseline.{key} (fewer actions or CIDRs)")]
    PolicyTooLarge {
        name: String,
        len: usize,
        key: &'static str,
    },

    #[error(
        "{what} {path}: {source}; check that the directory exists and is writable by iam-warden"
    )]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Other(String),
}

fn hint_suffix(h: &Option<&'static str>) -> String {
    h.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

impl Error {
    /// The AWS error code, if this is an AWS error that carried one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The full cause chain behind the one-line message, when there is more to it.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::Aws { detail, .. } if !detail.is_empty() => Some(detail),
            _ => None,
        }
    }

    /// An AWS call that failed in a way that leaves open whether it was applied.
    pub fn may_have_been_applied(&self) -> bool {
        matches!(
            self,
            Error::Aws {
                ambiguous: true,
                ..
            }
        )
    }

    /// The entity does not exist (a user deleted between observe and apply, ...).
    pub fn is_not_found(&self) -> bool {
        self.aws_code() == Some("NoSuchEntity")
    }

    /// A quota was hit (LimitExceeded): e.g. a user already in 10 groups.
    pub fn is_limit_exceeded(&self) -> bool {
        self.aws_code() == Some("LimitExceeded")
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

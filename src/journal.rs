//! The append-only JSON-lines journal: one line per write or would-be write (dry-run),
//! with time, account, user, action, target, reason, mode, outcome and error.
//! Nothing secret is ever passed here: actions carry no passwords or secret keys.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub account: String,
    pub user: Option<String>,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub mode: String,
    /// applied | dry_run | skipped | failed | blocked
    pub outcome: String,
    pub error: Option<String>,
}

/// An open journal file. Lines are written whole and synced, under a lock.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Open (creating the file and its directory) for appending. The file is private
    /// (0600, narrowed if an older version made it wider) and a directory created for it
    /// is 0700 ([`crate::private_fs`]).
    pub fn open(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_fs::create_dir_all(dir)
                .map_err(|e| Error::io("cannot create the journal directory", dir, e))?;
        }
        let file = crate::private_fs::open(path, OpenOptions::new().create(true).append(true))
            .map_err(|e| Error::io("cannot open the journal", path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(&self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_string(entry)
            .map_err(|e| Error::Other(format!("cannot encode a journal entry: {e}")))?;
        line.push('\n');
        let mut f = self
            .file
            .lock()
            .map_err(|_| Error::Other("journal lock poisoned".into()))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io("cannot write the journal", &self.path, e))
    }

    /// Read every entry (for tests and tools).
    pub fn read_all(path: &Path) -> Result<Vec<Entry>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read the journal", path, e))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::Other(format!("journal {} line {}: {e}", path.display(), i + 1))
                })
            })
            .collect()
    }
}

pub fn mode_str(mode: Mode) -> String {
    mode.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_line_per_entry_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.jsonl");
        let e = Entry {
            time: Utc::now(),
            account: "123456789012".into(),
            user: Some("bob".into()),
            action: "delete_login_profile".into(),
            target: "login profile of bob".into(),
            reason: "unused".into(),
            mode: "enforce".into(),
            outcome: "applied".into(),
            error: None,
        };
        {
            let j = Journal::open(&path).unwrap();
            j.record(&e).unwrap();
        }
        let j = Journal::open(&path).unwrap();
        j.record(&Entry {
            outcome: "failed".into(),
            error: Some("x".into()),
            ..e.clone()
        })
        .unwrap();
        let all = Journal::read_all(&path).unwrap();
        assert_eq!(all.len(), 2, "appends, never truncates");
        assert_eq!(all[0], e);
        assert_eq!(all[1].outcome, "failed");
    }

    #[test]
    fn unwritable_location_is_a_clear_error() {
        let e = Journal::open(Path::new("/proc/iam-warden/journal.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/proc/iam-warden") && e.contains("writable"),
            "{e}"
        );
    }
}

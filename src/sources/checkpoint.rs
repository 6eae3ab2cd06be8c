//! The CloudTrail poller's checkpoint: the one piece of local state iam-warden keeps.
//!
//! File: `<state_dir>/cloudtrail-checkpoint.json`, for example
//!
//! ```json
//! {
//!   "version": 1,
//!   "polled_until": "2024-08-01T13:42:21.123Z",
//!   "seen": [{"id": "5c0bb0e4-...", "time": "2024-08-01T13:40:02Z"}]
//! }
//! ```
//!
//! - `polled_until`: the end of the last successful poll window. The next poll (also after a
//!   restart) starts at `polled_until - overlap`, so events that were created while the daemon
//!   was down are not missed, and late-delivered events are still found.
//! - `seen`: the event ids (with their `eventTime`) that the next window may cover again, so
//!   that a restart does not replay them.
//!
//! The file is written atomically (a temporary file in the same directory, fsync, rename,
//! fsync of the directory), so a crash leaves either the old or the new checkpoint. It is
//! private (0600) and a state directory created for it is 0700, whatever the umask
//! ([`crate::private_fs`]).
//!
//! **A corrupt or unknown-version file is not fatal**: [`Checkpoint::load`] logs a warning
//! naming the file, moves it aside to `cloudtrail-checkpoint.json.corrupt` and returns `None`,
//! and the poller starts over from `initial_lookback`. The controller is level-triggered, so
//! replaying events costs at most a few extra reconciles, whereas refusing to start would
//! leave the account unguarded. A file that cannot be *read* (permissions, I/O error) is an
//! error: the state directory is then unusable for writing the checkpoint as well.

use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The checkpoint's file name inside the state directory.
pub const FILE_NAME: &str = "cloudtrail-checkpoint.json";

/// The format version written (and the only one read).
pub const VERSION: u32 = 1;

/// One event id the next poll window may cover again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEvent {
    /// CloudTrail `eventID`.
    pub id: String,
    /// Its `eventTime`.
    pub time: DateTime<Utc>,
}

/// The CloudTrail poll cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version, [`VERSION`].
    pub version: u32,
    /// End of the last successful poll window.
    pub polled_until: DateTime<Utc>,
    /// Events inside the overlap window, already handled.
    #[serde(default)]
    pub seen: Vec<SeenEvent>,
}

impl Checkpoint {
    /// A checkpoint of the current version.
    pub fn new(polled_until: DateTime<Utc>, seen: Vec<SeenEvent>) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            polled_until,
            seen,
        }
    }

    /// The checkpoint file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads the checkpoint from `dir`. A missing file is `Ok(None)` (first start). A corrupt
    /// file, or one of another format version, is logged, moved aside to
    /// `cloudtrail-checkpoint.json.corrupt` and also gives `Ok(None)`: the poller starts over
    /// from `initial_lookback`. Only a file that exists but cannot be read is an error.
    pub fn load(dir: &Path) -> Result<Option<Checkpoint>> {
        let path = Self::path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                discard_corrupt(&path, "it is not UTF-8 text");
                return Ok(None);
            }
            Err(e) => return Err(Error::io("cannot read the CloudTrail checkpoint", path, e)),
        };
        // One written by an older version may be 0644: make it private now, not at the
        // next save (best effort: a failure here shows again when saving).
        if let Ok(f) = File::open(&path) {
            let _ = crate::private_fs::restrict(&f, &path);
        }
        match serde_json::from_str::<Checkpoint>(&text) {
            Ok(cp) if cp.version == VERSION => Ok(Some(cp)),
            Ok(cp) => {
                discard_corrupt(
                    &path,
                    &format!(
                        "it has format version {}, this iam-warden reads version {VERSION}",
                        cp.version
                    ),
                );
                Ok(None)
            }
            Err(e) => {
                discard_corrupt(&path, &format!("it is not a valid checkpoint: {e}"));
                Ok(None)
            }
        }
    }

    /// Writes the checkpoint to `dir` atomically (creating `dir` if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        crate::private_fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create the state directory", dir, e))?;
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("cannot encode the CloudTrail checkpoint: {e}")))?;
        // Unique per writer, so two processes sharing a state directory never interleave.
        let tmp = dir.join(format!(
            ".{FILE_NAME}.{}.{:08x}.tmp",
            std::process::id(),
            fastrand::u32(..)
        ));
        let written = (|| {
            let mut f =
                crate::private_fs::open(&tmp, fs::OpenOptions::new().write(true).create_new(true))?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("cannot write the CloudTrail checkpoint", path, e));
        }
        // Make the rename itself durable (best effort: not every platform can open a dir).
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Logs why the checkpoint at `path` is unusable and moves it aside (best effort).
fn discard_corrupt(path: &Path, why: &str) {
    let aside = path.with_extension("json.corrupt");
    let moved = fs::rename(path, &aside).is_ok();
    tracing::warn!(
        path = %path.display(),
        moved_to = moved.then(|| aside.display().to_string()),
        "ignoring the CloudTrail checkpoint because {why}; polling starts over from \
         sources.cloudtrail.initial_lookback (events in that window may be handled again, \
         which is harmless). Delete the file to silence this warning."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn sample() -> Checkpoint {
        Checkpoint::new(
            at("2024-08-01T13:42:21.5Z"),
            vec![
                SeenEvent {
                    id: "e1".into(),
                    time: at("2024-08-01T13:40:00Z"),
                },
                SeenEvent {
                    id: "e2".into(),
                    time: at("2024-08-01T13:41:00Z"),
                },
            ],
        )
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), None);
        assert_eq!(
            Checkpoint::load(&dir.path().join("does-not-exist")).expect("load"),
            None
        );
    }

    #[test]
    fn round_trip_and_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = sample();
        cp.save(dir.path()).expect("save");
        assert_eq!(files(dir.path()), [FILE_NAME], "no temporary file left");
        assert_eq!(
            Checkpoint::load(dir.path()).expect("load"),
            Some(cp.clone())
        );

        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(Checkpoint::path(dir.path())).expect("read"))
                .expect("JSON");
        assert_eq!(v["version"], 1);
        assert_eq!(v["polled_until"], "2024-08-01T13:42:21.500Z");
        assert_eq!(v["seen"][1]["id"], "e2");
        assert_eq!(v["seen"][1]["time"], "2024-08-01T13:41:00Z");

        // Overwrite with a newer one.
        let newer = Checkpoint::new(at("2024-08-01T14:00:00Z"), Vec::new());
        newer.save(dir.path()).expect("save again");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), Some(newer));
        assert_eq!(files(dir.path()), [FILE_NAME]);
    }

    #[test]
    fn seen_is_optional_when_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            Checkpoint::path(dir.path()),
            r#"{"version":1,"polled_until":"2024-08-01T13:42:21Z"}"#,
        )
        .expect("write");
        let cp = Checkpoint::load(dir.path()).expect("load").expect("some");
        assert_eq!(cp.polled_until, at("2024-08-01T13:42:21Z"));
        assert!(cp.seen.is_empty());
    }

    #[test]
    fn save_creates_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        sample().save(&nested).expect("save");
        assert_eq!(Checkpoint::load(&nested).expect("load"), Some(sample()));
    }

    #[test]
    fn corrupt_or_foreign_files_are_moved_aside_and_start_over() {
        for (content, what) in [
            ("{\"version\":1,\"polled_", "truncated"),
            ("not json at all", "garbage"),
            ("[]", "wrong shape"),
            (
                r#"{"version":1,"polled_until":"yesterday","seen":[]}"#,
                "bad time",
            ),
            (
                r#"{"version":2,"polled_until":"2024-08-01T13:42:21Z","seen":[]}"#,
                "newer version",
            ),
            (
                r#"{"version":1,"polled_until":"2024-08-01T13:42:21Z","extra":1}"#,
                "unknown field",
            ),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::write(Checkpoint::path(dir.path()), content).expect("write");
            assert_eq!(Checkpoint::load(dir.path()).expect(what), None, "{what}");
            assert_eq!(
                files(dir.path()),
                [format!("{FILE_NAME}.corrupt")],
                "{what}: moved aside"
            );
            // And the poller can write a fresh one.
            sample().save(dir.path()).expect("save after corrupt");
            assert_eq!(Checkpoint::load(dir.path()).expect("load"), Some(sample()));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(Checkpoint::path(dir.path()), [0xff, 0xfe, 0x00]).expect("write");
        assert_eq!(Checkpoint::load(dir.path()).expect("binary"), None);
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be cannot be read as a file.
        fs::create_dir(Checkpoint::path(dir.path())).expect("mkdir");
        let err = Checkpoint::load(dir.path()).expect_err("a directory is not a checkpoint");
        let msg = err.to_string();
        assert!(msg.contains(FILE_NAME), "{msg}");
        assert!(msg.contains("writable"), "{msg}");
        // Saving over it fails with a clear error too, and leaves no temporary file.
        let err = sample()
            .save(dir.path())
            .expect_err("cannot replace a directory");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        assert_eq!(files(dir.path()), [FILE_NAME]);
    }
}

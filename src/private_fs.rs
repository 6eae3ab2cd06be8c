//! Files iam-warden keeps on disk (the journal, the CloudTrail checkpoint) and the
//! directories it creates for them are private to its user, whatever the umask:
//! directories 0700, files 0600.
//!
//! - A directory iam-warden creates gets 0700 (every component it creates).
//! - An existing directory is never changed (the state directory may be a mount point
//!   or shared with other software); if others can enter it, a warning says how to fix
//!   it. Group access is accepted without a warning when the group is iam-warden's own
//!   (Kubernetes `fsGroup` makes a volume's root group-writable for the pod's group).
//! - A file iam-warden creates gets 0600; an existing one with wider permissions (made
//!   by an older version under umask 022: 0644) is narrowed to 0600, with a warning.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of directories iam-warden creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files iam-warden creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700 (whatever the umask). An existing
/// directory is left as it is, with a warning if users other than iam-warden's can
/// enter it.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        warn_if_open(dir);
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        // Remember which components exist, to fix the mode of only those created here
        // (the umask may have removed bits DirBuilder asked for).
        let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        for p in missing {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(DIR_MODE))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Opens `path` with `options` (which must allow creating it); a new file gets 0600, an
/// existing one with wider permissions is narrowed to 0600.
pub fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    let file = options.open(path)?;
    restrict(&file, path)?;
    Ok(file)
}

/// Narrows an open file's permissions to 0600 if they are wider (or not exactly 0600
/// because of the umask), warning when others could read it.
pub fn restrict(file: &File, path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o7777;
        if mode != FILE_MODE {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "narrowed the permissions of {} from {mode:04o} to {FILE_MODE:04o}: it \
                     was readable by other users (made by an older iam-warden or by hand)",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Warns when users other than iam-warden's can enter an existing directory.
fn warn_if_open(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(dir) else {
            return;
        };
        let mode = meta.mode() & 0o7777;
        // SAFETY: getegid(2) takes no arguments, touches no memory and cannot fail.
        let own_group = meta.gid() == unsafe { sys::getegid() };
        let open_to_others = mode & 0o007 != 0;
        let open_to_group = mode & 0o070 != 0 && !own_group;
        if open_to_others || open_to_group {
            tracing::warn!(
                path = %dir.display(),
                "the directory {} has mode {mode:04o}: other users can read iam-warden's \
                 journal and checkpoint names in it; run `chmod 0700 {}` (systemd: \
                 StateDirectoryMode=0700)",
                dir.display(),
                dir.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// POSIX (unistd.h); `gid_t` is a 32-bit unsigned integer on the platforms iam-warden runs on.
#[cfg(unix)]
mod sys {
    extern "C" {
        pub fn getegid() -> u32;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_directories_are_0700_and_files_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        open(&f, OpenOptions::new().create(true).append(true)).unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    /// Set in the child process of [`modes_hold_under_umask_000`].
    const CHILD: &str = "IAM_WARDEN_TEST_UMASK_CHILD";

    /// The umask is per process: run the real work in a child (this test binary again)
    /// started by a shell with `umask 000`.
    #[test]
    fn modes_hold_under_umask_000() {
        if std::env::var_os(CHILD).is_some() {
            return in_umask_000_child();
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"umask 000 && exec "$0" "$@""#)
            .arg(exe)
            .args([
                "--exact",
                "private_fs::tests::modes_hold_under_umask_000",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn in_umask_000_child() {
        let tmp = tempfile::tempdir().unwrap();
        // The umask really is 000 here: a plain file gets 0666.
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        assert_eq!(
            mode(&plain),
            0o666,
            "the child does not run under umask 000"
        );

        let state = tmp.path().join("var/lib/iam-warden");
        let journal = crate::journal::Journal::open(&state.join("journal.jsonl")).unwrap();
        assert_eq!(mode(&tmp.path().join("var")), 0o700);
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(journal.path()), 0o600);

        let other = tmp.path().join("other-state");
        let cp = crate::sources::checkpoint::Checkpoint::new(chrono::Utc::now(), Vec::new());
        cp.save(&other).unwrap();
        assert_eq!(mode(&other), 0o700);
        assert_eq!(
            mode(&crate::sources::checkpoint::Checkpoint::path(&other)),
            0o600
        );
        // Saved again (rename over the old one): still 0600.
        cp.save(&other).unwrap();
        assert_eq!(
            mode(&crate::sources::checkpoint::Checkpoint::path(&other)),
            0o600
        );
    }

    #[test]
    fn an_existing_wide_file_is_narrowed_and_an_existing_dir_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir_all(tmp.path()).unwrap();
        assert_eq!(
            mode(tmp.path()),
            0o755,
            "an existing directory is not changed"
        );
        let f = tmp.path().join("journal.jsonl");
        std::fs::write(&f, "old\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        open(&f, OpenOptions::new().create(true).append(true)).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "old\n",
            "content kept"
        );
    }
}

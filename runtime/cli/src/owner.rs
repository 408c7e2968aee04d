//! One owner per data directory. Two `dripline` processes on one database
//! would both deliver every pending message and take over each other's
//! timers; the second one refuses to start instead, naming the first.
//!
//! The lock is the operating system's (an advisory `flock` on
//! `<data>/dripline.lock`), so it goes with the process however it ends: a
//! process killed with SIGKILL leaves no stale lock for the next one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;

use anyhow::Context as _;

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "dripline.lock";

/// Holds the data directory for this process until dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the data directory `data` (creating it), or says which process
    /// holds it.
    pub fn acquire(data: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let path = data.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                // The pid is for the message a second process prints; the
                // lock itself is what keeps it out.
                file.set_len(0)?;
                file.rewind()?;
                writeln!(file, "{}", std::process::id())?;
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = owner.trim();
                let owner = if owner.is_empty() { "unknown" } else { owner };
                anyhow::bail!(
                    "{} is in use by another dripline process (pid {owner}); stop it, or give this one its own --data",
                    data.display()
                )
            }
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_lock_on_a_held_directory_is_refused_naming_the_holder_and_a_released_one_is_taken()
    {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::acquire(dir.path()).unwrap();
        let error = DataLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(first);
        assert!(DataLock::acquire(dir.path()).is_ok());
    }
}

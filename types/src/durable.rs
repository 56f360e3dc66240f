//! A file replaced at once and durably: the way every small state file of
//! tephra is written (signing guards, checkpoints, the batcher's posted
//! mark, the checkpoint syncer's files), so that a crash leaves the old
//! content or the new, never a torn mix, and a returned write survives
//! power loss.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::Path,
};

/// Makes `path` hold `bytes`: written aside (`<path>.tmp`), fsync'd,
/// renamed over `path`, and the directory fsync'd so that the rename
/// itself is durable.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let aside = path.with_extension("tmp");
    let mut file = File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&aside, path)?;
    sync_parent(path)
}

/// fsyncs the directory holding `path`, so that a file created or renamed
/// in it stays after a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_nothing_is_left_aside() {
        let dir = tephra_testkit::fresh_dir("durable");
        let path = dir.join("state.json");
        replace_file(&path, b"one").unwrap();
        replace_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!path.with_extension("tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}

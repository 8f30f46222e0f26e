//! What an edge keeps of its configuration in its data directory, so that one restarted while
//! Redis is away serves what it served before: the last snapshot it loaded and the changes it
//! applied after it, each still signed (they are checked again when read back).
//!
//! `<data_dir>/cluster/snapshot` holds one message, replaced whole (written aside, synced,
//! renamed); `<data_dir>/cluster/changes` the messages after it, each behind its length (u32,
//! big-endian). A torn last record (a crash mid-append) is ignored.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The largest record read back: a message's own limit and its header.
const MAX_RECORD: usize = crate::envelope::MAX_BODY_BYTES + 1024;

/// What [`Kept::read`] gives back: the messages as they were kept.
#[derive(Debug, PartialEq, Eq)]
pub struct KeptMessages {
    /// The snapshot.
    pub snapshot: Vec<u8>,
    /// The changes applied after it, oldest first.
    pub changes: Vec<Vec<u8>>,
}

/// An edge's kept configuration.
pub struct Kept {
    dir: PathBuf,
}

impl Kept {
    /// Under `data_dir/cluster`, made if missing.
    pub fn open(data_dir: &Path) -> io::Result<Kept> {
        let dir = data_dir.join("cluster");
        std::fs::create_dir_all(&dir)?;
        Ok(Kept { dir })
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    fn changes_path(&self) -> PathBuf {
        self.dir.join("changes")
    }

    /// Keeps `message` as the snapshot and forgets the changes kept before it.
    pub fn keep_snapshot(&self, message: &[u8]) -> io::Result<()> {
        let aside = self.dir.join("snapshot.new");
        {
            let mut file = std::fs::File::create(&aside)?;
            file.write_all(message)?;
            file.sync_all()?;
        }
        std::fs::rename(&aside, self.snapshot_path())?;
        // After the rename: a crash between the two leaves changes the new snapshot covers,
        // which are skipped when read back (their versions are not newer).
        std::fs::File::create(self.changes_path())?.sync_all()
    }

    /// Appends a change applied after the snapshot.
    pub fn keep_change(&self, message: &[u8]) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.changes_path())?;
        let mut record = Vec::with_capacity(4 + message.len());
        record.extend_from_slice(&(message.len() as u32).to_be_bytes());
        record.extend_from_slice(message);
        file.write_all(&record)?;
        file.sync_data()
    }

    /// The snapshot and the changes after it, as kept (`None`: nothing kept yet).
    pub fn read(&self) -> io::Result<Option<KeptMessages>> {
        let snapshot = match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        match std::fs::File::open(self.changes_path()) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut changes = Vec::new();
        let mut rest = &bytes[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            if len > MAX_RECORD || tail.len() < len {
                // Torn by a crash: what came before it stands.
                break;
            }
            changes.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        Ok(Some(KeptMessages { snapshot, changes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_and_its_changes_are_read_back_and_a_new_snapshot_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Kept::open(dir.path()).unwrap();
        assert!(kept.read().unwrap().is_none());
        kept.keep_snapshot(b"s1").unwrap();
        kept.keep_change(b"c1").unwrap();
        kept.keep_change(b"c2").unwrap();
        let read = kept.read().unwrap().unwrap();
        assert_eq!(read.snapshot, b"s1");
        assert_eq!(read.changes, vec![b"c1".to_vec(), b"c2".to_vec()]);
        kept.keep_snapshot(b"s2").unwrap();
        let read = kept.read().unwrap().unwrap();
        assert_eq!((read.snapshot, read.changes), (b"s2".to_vec(), vec![]));
    }

    #[test]
    fn a_torn_last_change_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Kept::open(dir.path()).unwrap();
        kept.keep_snapshot(b"s").unwrap();
        kept.keep_change(b"whole").unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("cluster/changes"))
            .unwrap();
        file.write_all(&[0, 0, 0, 9, b'x']).unwrap();
        let read = kept.read().unwrap().unwrap();
        assert_eq!(read.changes, vec![b"whole".to_vec()]);
    }
}

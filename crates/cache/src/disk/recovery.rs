//! What [`DiskTier::open`](super::DiskTier::open) finds on disk: the objects to keep, and the
//! removal of everything else in the tier's directories (temp files of writes a crash or a
//! leak cut short, torn objects, files that are not ours).
//!
//! An object is kept when its head is valid and its body file has the length the head says.
//! Reading every body's trailer too would double the files opened at start; the trailer and
//! the blocks are checked when the body is read.

use super::format::{
    FileName, allocated, body_file_len, body_file_name, fan_out, fan_out_dir_name, head_file_name,
    parse_file_name,
};
use super::index::Entry;
use super::{DiskError, HeadRead, ObjectId, TMP_DIR, io_error, read_head, remove_if_present};
use std::collections::HashSet;
use std::fs::{self, FileType};
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// A valid object found at open.
pub(super) struct FoundObject {
    pub id: ObjectId,
    pub entry: Entry,
    /// The head file's mtime: when the object was written or last accessed, give or take
    /// [`ACCESS_STAMP_INTERVAL`](super::ACCESS_STAMP_INTERVAL).
    pub last_access: SystemTime,
}

#[derive(Default)]
pub(super) struct Found {
    pub objects: Vec<FoundObject>,
    /// Highest serial of a kept body; new writes number from the next one.
    pub max_serial: u64,
    pub removed_files: usize,
}

/// Creates the tier's directory and `tmp/` if needed, empties `tmp/`, and checks every fan-out
/// directory there is.
pub(super) fn recover(dir: &Path) -> Result<Found, DiskError> {
    let mut found = Found::default();
    let tmp = dir.join(TMP_DIR);
    create_dir(&tmp)?;
    for entry in fs::read_dir(&tmp).map_err(io_error(&tmp))? {
        let entry = entry.map_err(io_error(&tmp))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error(&path))?;
        remove_entry(&path, kind).map_err(io_error(&path))?;
        found.removed_files += 1;
    }
    for byte in 0..=u8::MAX {
        recover_fan_out_dir(&dir.join(fan_out_dir_name(byte)), byte, &mut found)?;
    }
    Ok(found)
}

fn recover_fan_out_dir(dir: &Path, byte: u8, found: &mut Found) -> Result<(), DiskError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Created on first use: no object ever went there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut heads = Vec::new();
    let mut bodies = HashSet::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error(&path))?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_file_name) {
            Some(FileName::Head(id)) if kind.is_file() && fan_out(id) == byte => heads.push(id),
            Some(FileName::Body(id, serial)) if kind.is_file() && fan_out(id) == byte => {
                bodies.insert((id, serial));
            }
            _ => {
                remove_entry(&path, kind).map_err(io_error(&path))?;
                found.removed_files += 1;
            }
        }
    }
    for id in heads {
        let head_path = dir.join(head_file_name(id));
        let stored = match read_head(&head_path, id).map_err(io_error(&head_path))? {
            HeadRead::Valid(stored) => Some(stored),
            HeadRead::Missing | HeadRead::Invalid => None,
        };
        let kept = stored.filter(|stored| {
            let serial = stored.head.serial;
            bodies.contains(&(id, serial))
                && fs::metadata(dir.join(body_file_name(id, serial)))
                    .is_ok_and(|body| body.len() == body_file_len(stored.head.body_len))
        });
        let Some(stored) = kept else {
            remove_if_present(&head_path).map_err(io_error(&head_path))?;
            found.removed_files += 1;
            continue;
        };
        let serial = stored.head.serial;
        bodies.remove(&(id, serial));
        found.max_serial = found.max_serial.max(serial);
        found.objects.push(FoundObject {
            id,
            entry: Entry {
                serial,
                bytes: allocated(stored.len) + allocated(body_file_len(stored.head.body_len)),
            },
            last_access: stored.modified,
        });
    }
    // Bodies no head names: the replaced version of an object, or a body whose head a crash
    // kept from being published.
    for (id, serial) in bodies {
        let path = dir.join(body_file_name(id, serial));
        remove_if_present(&path).map_err(io_error(&path))?;
        found.removed_files += 1;
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), DiskError> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Removes a file, a symlink (not what it points to) or a whole directory.
fn remove_entry(path: &Path, kind: FileType) -> io::Result<()> {
    let removed = if kind.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

//! The disk tier: stored objects as files under one directory, bounded in bytes, checksummed,
//! and warm after a restart.
//!
//! What it is for: keeping more and larger objects than memory holds. An object is a small
//! opaque metadata blob (the cache's stored response head) and a body of any length, streamed
//! in and out in blocks. The API is blocking `std::fs` I/O; the cache calls it from
//! `tokio::task::spawn_blocking`.
//!
//! What it is not: a database. It does not know what the metadata means, keeps no history, and
//! may lose objects in a crash. It never serves a wrong one: whatever it finds on disk (torn
//! writes, flipped bits, garbage, a full disk) makes an object absent, never a panic.
//!
//! ```
//! use cache::disk::DiskTier;
//!
//! let dir = tempfile::tempdir()?;
//! let tier = DiskTier::open(dir.path(), 1 << 30)?;
//! let mut writer = tier.begin(7, b"stored headers")?;
//! writer.write(b"hello, ")?;
//! writer.write(b"world")?;
//! writer.commit()?;
//!
//! let mut object = tier.open_object(7)?.expect("just stored");
//! assert_eq!(object.meta(), b"stored headers");
//! assert_eq!(object.read_block()?.as_deref(), Some(&b"hello, world"[..]));
//! assert_eq!(object.read_block()?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layout
//! | path | what it holds |
//! |---|---|
//! | `lock` | locked (`flock`) while a tier is open: one tier per directory |
//! | `tmp/` | bodies and heads being written; emptied at open |
//! | `00/` … `ff/` | up to 256 fan-out directories, by the id's top byte (ids are hashes), each made when its first object is |
//! | `ab/<id>.head` | the object: magic, format version, id, body serial, body length, metadata, CRC-32 of all of it |
//! | `ab/<id>-<serial>.body` | the body in 64 KiB blocks, each followed by a CRC-32 of id, serial, block index and data; then a trailer (magic, version, id, serial, body length, CRC-32) |
//!
//! `<id>` is 32 lowercase hex digits, `<serial>` 16: the number of the commit that wrote the
//! body, unique within the directory. Anything else in a fan-out directory or in `tmp/` is
//! removed at open; entries in the top directory other than ours are left alone, since an
//! operator may have pointed the tier at a directory that holds other things.
//!
//! Why a head and a body file: an HTTP 304 replaces the stored headers of an object whose body
//! may be GiBs, so [`DiskTier::update_meta`] writes a new head and renames it over the old one,
//! never touching the body. A body file is immutable once published and named by its serial,
//! so replacing an object writes a new body file rather than rewriting one. A reader opens the
//! head, reads the metadata into memory, then opens the body the head names and keeps that open
//! file: it reads the version it opened even if the object is then updated, replaced or
//! removed (Linux keeps an unlinked open file readable).
//!
//! ## Publishing
//! 1. [`DiskTier::begin`] creates `tmp/<serial>.body`. Nothing is visible yet.
//! 2. [`DiskWriter::write`] seals each 64 KiB block with its CRC as it fills, and refuses the
//!    write that takes the object past `max_bytes` ([`DiskError::TooLarge`]).
//! 3. [`DiskWriter::commit`] seals the last block and the trailer, renames the body to its
//!    final name (still invisible: no head names it), writes the head to `tmp/` and renames it
//!    over `<id>.head`: that rename publishes. Then the replaced body is unlinked and least
//!    recently used objects are evicted until the tier is within `max_bytes`.
//!
//! A dropped writer removes its temp file; a crashed one leaves a temp file that the next
//! open removes.
//!
//! **No fsync.** A cache may lose objects in a power loss; it must not serve a wrong one, and
//! the checksums make that so without fsync. A file renamed into place whose data never reached
//! the disk reads back short, or as zeros or stale blocks: the length check catches the first,
//! and the block CRCs the others, because a block's CRC covers its id, serial and index, so no
//! block that was valid elsewhere passes. A head pairs with its body by serial, and the
//! trailer proves the body was written to its end. An fsync per object would instead make
//! every commit wait for the journal (milliseconds on a loaded disk) to protect data the origin
//! still has.
//!
//! ## Index and eviction
//! The index is in memory: 45 bytes per object, about 90 right after its tables grow (see
//! `index`), so ten million objects take 450 to 900 MB. Recency is an exact LRU list over last
//! access: [`DiskTier::open_object`], [`DiskTier::update_meta`] and commits count as access. A
//! restart takes the starting order from the head files' mtimes, which an access refreshes
//! when they are more than [`ACCESS_STAMP_INTERVAL`] old, so a day-long hot object does not stay
//! stamped with its write time. Reads at open check each object's head and its body's length;
//! the body's trailer and blocks are checked when it is read.
//!
//! `used_bytes` counts committed objects' files in 4 KiB allocation units (what ext4 and XFS
//! allocate by default), so `max_bytes` bounds the disk space used, not just file lengths: a
//! 100-byte response is two files and 8 KiB. Temp files still being written are not counted.
//!
//! ## Concurrency
//! One mutex guards the index and is held for a hash lookup or a list splice. Renames and
//! unlinks of an object's head take one of 64 striped locks by id, so that a head on disk and
//! its index entry change together; no lock is held while a body is written or read. The lock
//! order is stripe, then index.
//!
//! ## Invariants (each pinned by a named test in `tests`)
//! 1. A torn or corrupt object is never served: a bad head, trailer or length makes it absent,
//!    a bad block is an error before its bytes are returned, and either removes the object.
//!    (`torn_body_block_is_never_served`,
//!    `zeroed_block_with_zeroed_checksum_is_never_served`,
//!    `flipped_byte_in_meta_makes_object_absent`,
//!    `flipped_byte_in_head_fields_makes_object_absent`,
//!    `flipped_byte_in_trailer_makes_object_absent`, `truncated_body_is_absent_and_removed`,
//!    `truncated_files_are_removed_at_open`,
//!    `format::tests::head_round_trips_and_any_flipped_bit_is_refused`.)
//! 2. Nothing is visible before commit, and an unfinished write leaves no file behind.
//!    (`nothing_is_visible_before_commit`, `dropped_writer_leaves_no_file`,
//!    `crashed_writer_temp_files_are_removed_at_open`.)
//! 3. A reader keeps reading the version it opened, and metadata revalidated for one version
//!    never lands on another.
//!    (`update_meta_keeps_the_body_and_old_readers_keep_their_version`,
//!    `remove_while_reading_lets_the_reader_finish`,
//!    `replace_while_reading_lets_the_reader_finish_the_old_version`,
//!    `update_meta_if_applies_only_to_the_version_it_names`,
//!    `meta_update_racing_a_commit_leaves_the_new_version`.)
//! 4. `used_bytes <= max_bytes` once `open` or `commit` returns, by evicting the least recently
//!    used; an object larger than the bound is refused while it is written.
//!    (`eviction_keeps_the_bound_and_drops_the_least_recently_used`,
//!    `reopening_with_a_smaller_bound_evicts_down_to_it`,
//!    `object_larger_than_max_is_refused_while_writing`.)
//! 5. Nothing found on disk makes it panic; what is not ours in our directories is removed.
//!    (`garbage_and_foreign_files_are_removed_at_open`.)
//! 6. A failed write removes its temp file and leaves the tier usable.
//!    (`full_disk_aborts_the_writer_and_the_tier_stays_usable`.)
//! 7. The index matches the files, whatever threads do at once or others do to the files.
//!    (`concurrent_writers_readers_and_removers_never_see_a_mismatched_object`,
//!    `eviction_racing_a_new_commit_keeps_the_new_version`,
//!    `files_deleted_behind_the_tiers_back_make_objects_absent`.)

mod format;
mod index;
mod object;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

pub use object::DiskObject;
pub use writer::DiskWriter;

use format::{
    FileName, Head, MAX_META_BYTES, TRAILER_BYTES, body_file_len, body_file_name, decode_head,
    encode_head, fan_out, fan_out_dir_name, head_file_len, head_file_name, object_bytes,
    parse_file_name, trailer_matches,
};
use index::{Entry, Index};
use parking_lot::Mutex;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Identifies one stored object; the caller derives it from its cache key (a 128-bit hash).
pub type ObjectId = u128;

/// Which write of an object a reader holds, so that a revalidation's new metadata can be
/// applied to the body it was about ([`DiskTier::update_meta_if`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyVersion(u64);

/// An access refreshes a head file's mtime, the recency a restart starts from, when the mtime
/// is older than this: often enough to order objects by the hour, rarely enough that reads
/// cost no extra write.
pub const ACCESS_STAMP_INTERVAL: Duration = Duration::from_secs(3600);

/// Striped locks ordering the replacement of heads: with 64, writers of different objects
/// rarely wait for each other, and the locks take 64 bytes.
const PUBLISH_STRIPES: usize = 64;

/// Tries of [`DiskTier::open_object`] when a concurrent commit swaps the files under it.
const OPEN_ATTEMPTS: usize = 3;

const LOCK_FILE: &str = "lock";
const TMP_DIR: &str = "tmp";

/// What went wrong in the disk tier.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file of the tier could not be read, written, synced or renamed.
    #[error(
        "disk cache I/O failed on {}: {source}; check that the disk has free space and the \
         directory is readable and writable by Palisade",
        path.display()
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    #[error(
        "the object is larger than the disk tier's max_bytes ({max_bytes}) and was not \
         stored; raise max_bytes to keep objects this large"
    )]
    /// The write would take the object past the tier's `max_bytes`.
    TooLarge {
        /// The tier's bound, in bytes.
        max_bytes: u64,
    },
    #[error(
        "the object's metadata is {len} bytes, more than the {max} a disk object may carry; \
         it was not stored"
    )]
    /// The metadata record is longer than an object's head may hold.
    MetaTooLarge {
        /// The record's length, in bytes.
        len: usize,
        /// The most a head holds, in bytes.
        max: usize,
    },
    #[error(
        "stored object {id:032x} is corrupt at body offset {offset} and was removed; fetch it \
         from the origin again"
    )]
    /// A stored body failed its checksum; the object was removed.
    Corrupt {
        /// The object.
        id: ObjectId,
        /// Where in the body the bad block starts, in bytes.
        offset: u64,
    },
    #[error("cannot seek to {offset}: the body is {body_len} bytes long")]
    /// A seek past the end of a body.
    OutOfRange {
        /// The offset asked for, in bytes.
        offset: u64,
        /// The body's length, in bytes.
        body_len: u64,
    },
    #[error(
        "another disk tier has {} open; give each Palisade process its own cache directory",
        dir.display()
    )]
    /// Another process (or another tier in this one) holds the directory's lock.
    Locked {
        /// The tier's directory.
        dir: PathBuf,
    },
    /// A write that failed earlier was used again.
    #[error("this write failed earlier and was aborted; begin a new one")]
    Aborted,
    /// The tier closed (the process is stopping) before the write committed.
    #[error("the disk tier was closed before this write committed; the object was not stored")]
    Closed,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A bounded, crash-safe store of objects on disk. `Send + Sync`: share it in an `Arc`.
pub struct DiskTier {
    store: Arc<Store>,
    /// Locked for the tier's life. Writers and readers may outlive the tier; the lock does not
    /// wait for them, so a tier can be reopened after a writer leaked.
    _lock: File,
}

/// The directory and its index, shared by the tier, its writers and its readers.
struct Store {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// Held while an object's head is renamed or unlinked and its index entry changed to
    /// match, so the two never disagree for long; never across the I/O of a body.
    publish: [Mutex<()>; PUBLISH_STRIPES],
    next_serial: AtomicU64,
    /// Set when the tier is dropped: a writer still running must not publish into a directory
    /// another tier may own by then.
    closed: AtomicBool,
    /// Makes writes of body blocks fail as on a full disk.
    #[cfg(test)]
    fail_writes: AtomicBool,
}

impl DiskTier {
    /// Opens (creating if needed) the tier in `dir`, bounded to `max_bytes` of files.
    /// Scans what is there: keeps complete, valid objects; deletes temp files and anything
    /// torn; evicts the least recently used if the bound has shrunk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DiskTier, DiskError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DiskError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(source)) => return Err(io_error(&lock_path)(source)),
        }

        let mut found = recovery::recover(dir)?;
        found
            .objects
            .sort_unstable_by_key(|object| object.last_access);
        let mut index = Index::with_capacity(found.objects.len());
        for object in &found.objects {
            index.insert(object.id, object.entry);
        }
        let store = Store {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new(index),
            publish: std::array::from_fn(|_| Mutex::new(())),
            next_serial: AtomicU64::new(found.max_serial + 1),
            closed: AtomicBool::new(false),
            #[cfg(test)]
            fail_writes: AtomicBool::new(false),
        };
        let evicted = store.evict();
        let index = store.index.lock();
        tracing::info!(
            dir = %dir.display(),
            objects = index.len(),
            bytes = index.used_bytes(),
            removed_files = found.removed_files,
            evicted,
            "disk tier opened"
        );
        drop(index);
        Ok(DiskTier {
            store: Arc::new(store),
            _lock: lock,
        })
    }

    /// Starts writing an object. Nothing is visible to readers until [`DiskWriter::commit`].
    pub fn begin(&self, id: ObjectId, meta: &[u8]) -> Result<DiskWriter, DiskError> {
        DiskWriter::begin(Arc::clone(&self.store), id, meta)
    }

    /// The object, if present and its head, length and trailer are intact; its body blocks
    /// are verified as they are read. Counts as an access for eviction.
    pub fn open_object(&self, id: ObjectId) -> Result<Option<DiskObject>, DiskError> {
        let store = &self.store;
        let head_path = store.head_path(id);
        for _ in 0..OPEN_ATTEMPTS {
            let Some(entry) = store.index.lock().touch(id) else {
                return Ok(None);
            };
            let stored = match read_head(&head_path, id).map_err(io_error(&head_path))? {
                HeadRead::Valid(stored) => stored,
                // Heads are replaced by rename, so one that is missing or invalid was removed
                // meanwhile (then the index no longer names `entry`) or lost: drop it.
                HeadRead::Missing | HeadRead::Invalid => {
                    store.discard(id, entry.serial);
                    return Ok(None);
                }
            };
            let serial = stored.head.serial;
            let body_path = store.body_path(id, serial);
            let body = match File::open(&body_path) {
                Ok(body) => body,
                // A body is unlinked only after the index stops naming it: if the index still
                // does, the file was lost; if not, the object was replaced meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if store.discard(id, serial) {
                        return Ok(None);
                    }
                    continue;
                }
                Err(e) => return Err(io_error(&body_path)(e)),
            };
            if !body_is_complete(&body, id, serial, stored.head.body_len)
                .map_err(io_error(&body_path))?
            {
                store.discard(id, serial);
                return Ok(None);
            }
            stored.refresh_access_stamp();
            return Ok(Some(DiskObject::new(
                Arc::clone(store),
                id,
                serial,
                stored.head,
                body,
            )));
        }
        Ok(None)
    }

    /// Replaces an object's metadata without rewriting its body (an HTTP 304 refreshes the
    /// stored headers of a possibly huge object). Atomic: readers see the old or the new
    /// metadata. Returns whether the object was present and updated.
    ///
    /// It applies to whatever version is stored when it runs; a caller revalidating a version
    /// it read should use [`DiskTier::update_meta_if`].
    pub fn update_meta(&self, id: ObjectId, meta: &[u8]) -> Result<bool, DiskError> {
        self.store.update_meta(id, None, meta)
    }

    /// [`DiskTier::update_meta`], only if the stored body is still `version` (from
    /// [`DiskObject::version`]): headers revalidated for one body must not land on another.
    pub fn update_meta_if(
        &self,
        id: ObjectId,
        version: BodyVersion,
        meta: &[u8],
    ) -> Result<bool, DiskError> {
        self.store.update_meta(id, Some(version.0), meta)
    }

    /// Removes the object; readers that have it open keep reading it.
    pub fn remove(&self, id: ObjectId) -> Result<(), DiskError> {
        self.store.remove(id)
    }

    /// Whether an object is stored under `id`.
    pub fn contains(&self, id: ObjectId) -> bool {
        self.store.index.lock().get(id).is_some()
    }

    /// Every stored object's id and metadata, for the cache to rebuild its indexes at start.
    /// Reads the head files lazily, one at a time; objects committed or removed while it runs
    /// may or may not appear. A head it cannot read is skipped with a warning.
    pub fn scan(&self) -> impl Iterator<Item = (ObjectId, Vec<u8>)> + '_ {
        (0..=u8::MAX).flat_map(move |byte| {
            let dir = self.store.dir.join(fan_out_dir_name(byte));
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => Some(entries),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => {
                    let dir = dir.display();
                    tracing::warn!(%dir, %error, "disk tier scan skips a directory");
                    None
                }
            };
            entries
                .into_iter()
                .flatten()
                .filter_map(move |entry| self.store.scanned(entry.ok()?))
        })
    }

    /// Disk space of the stored objects' files, in allocation units.
    pub fn used_bytes(&self) -> u64 {
        self.store.index.lock().used_bytes()
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.store.index.lock().len()
    }

    /// True when no object is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tier's bound on disk space, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.store.max_bytes
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        self.store.closed.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskTier")
            .field("dir", &self.store.dir)
            .field("max_bytes", &self.store.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Store {
    fn fan_out_dir(&self, id: ObjectId) -> PathBuf {
        self.dir.join(fan_out_dir_name(fan_out(id)))
    }

    fn head_path(&self, id: ObjectId) -> PathBuf {
        self.fan_out_dir(id).join(head_file_name(id))
    }

    fn body_path(&self, id: ObjectId, serial: u64) -> PathBuf {
        self.fan_out_dir(id).join(body_file_name(id, serial))
    }

    fn tmp_path(&self, serial: u64, extension: &str) -> PathBuf {
        self.dir
            .join(TMP_DIR)
            .join(format!("{serial:016x}.{extension}"))
    }

    /// Renames a finished body into its fan-out directory, making the directory on first use:
    /// a new tier is then one directory rather than 257, and opening one reads only those
    /// that hold something.
    fn rename_into_fan_out(&self, from: &Path, to: &Path) -> io::Result<()> {
        match fs::rename(from, to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(fan_out_dir) = to.parent() {
                    match fs::create_dir(fan_out_dir) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                        _ => {}
                    }
                }
                fs::rename(from, to)
            }
            renamed => renamed,
        }
    }

    fn new_serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    fn stripe(&self, id: ObjectId) -> &Mutex<()> {
        &self.publish[(index::id_hash(id) >> 58) as usize % PUBLISH_STRIPES]
    }

    /// Writes `bytes` to a file being written, or fails as a full disk would when a test says so.
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::StorageFull.into());
        }
        io::Write::write_all(file, bytes)
    }

    /// Writes a head to a new temp file and returns its path.
    fn write_tmp_head(
        &self,
        id: ObjectId,
        serial: u64,
        body_len: u64,
        meta: &[u8],
    ) -> Result<PathBuf, DiskError> {
        let path = self.tmp_path(self.new_serial(), "head");
        let written = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| {
                self.write_all(&mut file, &encode_head(id, serial, body_len, meta))
            });
        match written {
            Ok(()) => Ok(path),
            Err(source) => {
                remove_quietly(&path);
                Err(DiskError::Io { path, source })
            }
        }
    }

    /// Renames `head_tmp` over the object's head, which publishes it, and records `entry`,
    /// if the stored version is still `expect_serial` (when given). Returns whether it did.
    fn publish(
        &self,
        id: ObjectId,
        entry: Entry,
        head_tmp: &Path,
        expect_serial: Option<u64>,
    ) -> Result<bool, DiskError> {
        let head_path = self.head_path(id);
        let stripe = self.stripe(id).lock();
        if let Some(expected) = expect_serial
            && self.index.lock().get(id).map(|stored| stored.serial) != Some(expected)
        {
            drop(stripe);
            remove_quietly(head_tmp);
            return Ok(false);
        }
        if let Err(source) = fs::rename(head_tmp, &head_path) {
            drop(stripe);
            remove_quietly(head_tmp);
            return Err(DiskError::Io {
                path: head_path,
                source,
            });
        }
        let displaced = self.index.lock().insert(id, entry);
        drop(stripe);
        if let Some(old) = displaced.replaced
            && old.serial != entry.serial
        {
            remove_quietly(&self.body_path(id, old.serial));
        }
        if let Some((pushed_id, pushed)) = displaced.pushed_out {
            self.unlink_dropped(pushed_id, pushed.serial);
        }
        Ok(true)
    }

    fn update_meta(
        &self,
        id: ObjectId,
        expect_serial: Option<u64>,
        meta: &[u8],
    ) -> Result<bool, DiskError> {
        check_meta_len(meta)?;
        let Some(entry) = self.index.lock().touch(id) else {
            return Ok(false);
        };
        if expect_serial.is_some_and(|expected| expected != entry.serial) {
            return Ok(false);
        }
        let head_path = self.head_path(id);
        let body_len = match read_head(&head_path, id).map_err(io_error(&head_path))? {
            HeadRead::Valid(stored) if stored.head.serial == entry.serial => stored.head.body_len,
            // Replaced since the index was read: the new version's metadata stays.
            HeadRead::Valid(_) => return Ok(false),
            HeadRead::Missing | HeadRead::Invalid => {
                self.discard(id, entry.serial);
                return Ok(false);
            }
        };
        let bytes = object_bytes(meta.len(), body_len);
        if bytes > self.max_bytes {
            return Err(DiskError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        let head_tmp = self.write_tmp_head(id, entry.serial, body_len, meta)?;
        let updated = self.publish(
            id,
            Entry {
                serial: entry.serial,
                bytes,
            },
            &head_tmp,
            Some(entry.serial),
        )?;
        self.evict();
        Ok(updated)
    }

    fn remove(&self, id: ObjectId) -> Result<(), DiskError> {
        let removed = {
            let _stripe = self.stripe(id).lock();
            let Some(entry) = self.index.lock().remove(id) else {
                return Ok(());
            };
            let head_path = self.head_path(id);
            remove_if_present(&head_path).map_err(io_error(&head_path))?;
            entry
        };
        let body_path = self.body_path(id, removed.serial);
        remove_if_present(&body_path).map_err(io_error(&body_path))
    }

    /// Removes an object found torn or lost, if the index still names that version. Returns
    /// whether it did.
    fn discard(&self, id: ObjectId, serial: u64) -> bool {
        {
            let _stripe = self.stripe(id).lock();
            let mut index = self.index.lock();
            if index.get(id).is_none_or(|stored| stored.serial != serial) {
                return false;
            }
            index.remove(id);
            drop(index);
            remove_quietly(&self.head_path(id));
        }
        remove_quietly(&self.body_path(id, serial));
        tracing::warn!(
            id = %format_args!("{id:032x}"),
            "disk tier removed an object whose files were torn, corrupt or missing"
        );
        true
    }

    /// Evicts least recently used objects until the tier is within its bound. Returns how many.
    fn evict(&self) -> usize {
        let victims = {
            let mut index = self.index.lock();
            let mut victims = Vec::new();
            while index.used_bytes() > self.max_bytes {
                match index.pop_oldest() {
                    Some(victim) => victims.push(victim),
                    None => break,
                }
            }
            victims
        };
        for &(id, entry) in &victims {
            self.unlink_dropped(id, entry.serial);
        }
        victims.len()
    }

    /// Deletes the files of an object already taken out of the index. Its head goes only if
    /// no newer version has been published under the id since.
    fn unlink_dropped(&self, id: ObjectId, serial: u64) {
        {
            let _stripe = self.stripe(id).lock();
            if self.index.lock().get(id).is_none() {
                remove_quietly(&self.head_path(id));
            }
        }
        remove_quietly(&self.body_path(id, serial));
    }

    /// One entry of a fan-out directory as [`DiskTier::scan`] yields it: a head of an object
    /// the index holds in that version.
    fn scanned(&self, entry: fs::DirEntry) -> Option<(ObjectId, Vec<u8>)> {
        let Some(FileName::Head(id)) = entry.file_name().to_str().and_then(parse_file_name) else {
            return None;
        };
        let path = entry.path();
        match read_head(&path, id) {
            Ok(HeadRead::Valid(stored)) => {
                let serial = self.index.lock().get(id)?.serial;
                (serial == stored.head.serial).then_some((id, stored.head.meta))
            }
            Ok(HeadRead::Missing | HeadRead::Invalid) => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "disk tier scan skips a head");
                None
            }
        }
    }
}

fn check_meta_len(meta: &[u8]) -> Result<(), DiskError> {
    if meta.len() > MAX_META_BYTES {
        return Err(DiskError::MetaTooLarge {
            len: meta.len(),
            max: MAX_META_BYTES,
        });
    }
    Ok(())
}

/// A head file as read: its content, and the open file to refresh its access stamp.
struct StoredHead {
    head: Head,
    file: File,
    len: u64,
    modified: SystemTime,
}

enum HeadRead {
    Valid(StoredHead),
    Missing,
    Invalid,
}

/// Reads and checks the head file at `path`, which should belong to object `id`.
fn read_head(path: &Path, id: ObjectId) -> io::Result<HeadRead> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HeadRead::Missing),
        Err(e) => return Err(e),
    };
    let metadata = file.metadata()?;
    let len = metadata.len();
    if !metadata.is_file() || len > head_file_len(MAX_META_BYTES) {
        return Ok(HeadRead::Invalid);
    }
    // Bounded above, so a garbage file cannot make this allocate much.
    let mut bytes = Vec::with_capacity(len as usize);
    Read::by_ref(&mut file).take(len).read_to_end(&mut bytes)?;
    let Some(head) = decode_head(id, bytes) else {
        return Ok(HeadRead::Invalid);
    };
    Ok(HeadRead::Valid(StoredHead {
        head,
        file,
        len,
        modified: metadata.modified()?,
    }))
}

impl StoredHead {
    /// Moves the head's mtime, the recency a restart starts from, to now if it is stale. Best
    /// effort: the stamp only orders evictions after a restart.
    fn refresh_access_stamp(&self) {
        let now = SystemTime::now();
        let stale = now
            .duration_since(self.modified)
            .is_ok_and(|age| age > ACCESS_STAMP_INTERVAL);
        if stale && let Err(error) = self.file.set_modified(now) {
            tracing::debug!(%error, "disk tier could not refresh an access stamp");
        }
    }
}

/// Whether an opened body file has the length its head says and ends with its trailer: it was
/// written to its end.
fn body_is_complete(body: &File, id: ObjectId, serial: u64, body_len: u64) -> io::Result<bool> {
    let len = body.metadata()?.len();
    if len != body_file_len(body_len) {
        return Ok(false);
    }
    let mut trailer = [0u8; TRAILER_BYTES];
    match body.read_exact_at(&mut trailer, len - TRAILER_BYTES as u64) {
        Ok(()) => Ok(trailer_matches(&trailer, id, serial, body_len)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a file whose removal nobody waits for: a leftover that fails to go now is found
/// and removed at the next open.
fn remove_quietly(path: &Path) {
    if let Err(error) = remove_if_present(path) {
        tracing::warn!(path = %path.display(), %error, "disk tier could not remove a file");
    }
}

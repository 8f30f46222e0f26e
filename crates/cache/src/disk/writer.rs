//! Writing one object: a temp body file filled block by block, then published by
//! [`DiskWriter::commit`].

use super::format::{BLOCK_BYTES, block_crc, encode_trailer, object_bytes};
use super::index::Entry;
use super::{DiskError, ObjectId, Store, check_meta_len, io_error, remove_quietly};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// An object being written. Nothing is visible to readers until [`DiskWriter::commit`];
/// dropping the writer without committing aborts it and removes its temp file.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let tier = cache::disk::DiskTier::open(dir.path(), 1 << 20)?;
/// let mut writer = tier.begin(1, b"meta")?;
/// writer.write(&[0u8; 100_000])?;
/// assert!(!tier.contains(1));
/// writer.commit()?;
/// assert!(tier.contains(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DiskWriter {
    store: Arc<Store>,
    id: ObjectId,
    serial: u64,
    meta: Vec<u8>,
    tmp_path: PathBuf,
    /// The temp body file; `None` once the writer has committed or aborted.
    file: Option<File>,
    /// The block being filled, with room for its checksum.
    block: Vec<u8>,
    blocks_written: u64,
    body_len: u64,
}

impl DiskWriter {
    pub(super) fn begin(
        store: Arc<Store>,
        id: ObjectId,
        meta: &[u8],
    ) -> Result<DiskWriter, DiskError> {
        check_meta_len(meta)?;
        if object_bytes(meta.len(), 0) > store.max_bytes {
            return Err(DiskError::TooLarge {
                max_bytes: store.max_bytes,
            });
        }
        let serial = store.new_serial();
        let tmp_path = store.tmp_path(serial, "body");
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(io_error(&tmp_path))?;
        Ok(DiskWriter {
            store,
            id,
            serial,
            meta: meta.to_vec(),
            tmp_path,
            file: Some(file),
            block: Vec::with_capacity(BLOCK_BYTES + 4),
            blocks_written: 0,
            body_len: 0,
        })
    }

    /// Appends a chunk of the body, of any size. Refuses, and aborts the write, as soon as the
    /// object would exceed the tier's `max_bytes`; any I/O error aborts it too, removing the
    /// temp file, and later calls return [`DiskError::Aborted`].
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), DiskError> {
        if self.file.is_none() {
            return Err(DiskError::Aborted);
        }
        let body_len = self.body_len + chunk.len() as u64;
        if object_bytes(self.meta.len(), body_len) > self.store.max_bytes {
            self.abort();
            return Err(DiskError::TooLarge {
                max_bytes: self.store.max_bytes,
            });
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(rest.len().min(BLOCK_BYTES - self.block.len()));
            self.block.extend_from_slice(now);
            rest = later;
            if self.block.len() == BLOCK_BYTES
                && let Err(e) = self.seal_block()
            {
                self.abort();
                return Err(e);
            }
        }
        self.body_len = body_len;
        Ok(())
    }

    /// Bytes of body written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Seals and publishes the object atomically, replacing an older one with the same id,
    /// then evicts least recently used objects until the tier is within `max_bytes`.
    pub fn commit(mut self) -> Result<(), DiskError> {
        if self.file.is_none() {
            return Err(DiskError::Aborted);
        }
        if self.store.closed.load(Ordering::Acquire) {
            self.abort();
            return Err(DiskError::Closed);
        }
        if let Err(e) = self.finish_body() {
            self.abort();
            return Err(e);
        }
        // No fsync before the renames: see "No fsync" in the module doc. A body renamed into
        // place whose data a power loss kept off the disk fails its length, trailer or block
        // checks and is never served.
        let body_path = self.store.body_path(self.id, self.serial);
        if let Err(source) = self.store.rename_into_fan_out(&self.tmp_path, &body_path) {
            self.abort();
            return Err(DiskError::Io {
                path: body_path,
                source,
            });
        }
        // The temp file is the body now: nothing for `abort` to remove.
        self.file = None;
        let entry = Entry {
            serial: self.serial,
            bytes: object_bytes(self.meta.len(), self.body_len),
        };
        let published = self
            .store
            .write_tmp_head(self.id, self.serial, self.body_len, &self.meta)
            .and_then(|head_tmp| self.store.publish(self.id, entry, &head_tmp, None));
        if let Err(e) = published {
            remove_quietly(&body_path);
            return Err(e);
        }
        self.store.evict();
        Ok(())
    }

    fn seal_block(&mut self) -> Result<(), DiskError> {
        let crc = block_crc(self.id, self.serial, self.blocks_written, &self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        let file = self.file.as_mut().ok_or(DiskError::Aborted)?;
        let written = self
            .store
            .write_all(file, &self.block)
            .map_err(io_error(&self.tmp_path));
        self.block.clear();
        self.blocks_written += 1;
        written
    }

    fn finish_body(&mut self) -> Result<(), DiskError> {
        if !self.block.is_empty() {
            self.seal_block()?;
        }
        self.write_to_file(&encode_trailer(self.id, self.serial, self.body_len))
    }

    fn write_to_file(&mut self, bytes: &[u8]) -> Result<(), DiskError> {
        let file = self.file.as_mut().ok_or(DiskError::Aborted)?;
        self.store
            .write_all(file, bytes)
            .map_err(io_error(&self.tmp_path))
    }

    /// Ends the write without publishing: closes and removes the temp file.
    fn abort(&mut self) {
        if self.file.take().is_some() {
            remove_quietly(&self.tmp_path);
        }
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        self.abort();
    }
}

impl std::fmt::Debug for DiskWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskWriter")
            .field("id", &format_args!("{:032x}", self.id))
            .field("body_len", &self.body_len)
            .field("open", &self.file.is_some())
            .finish_non_exhaustive()
    }
}

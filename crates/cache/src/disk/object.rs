//! Reading one object: its metadata, held in memory, and its body, read block by block from
//! the file that was opened, each block checked before its bytes are handed out.

use super::format::{BLOCK_BYTES, Head, block_crc, block_offset, split_block};
use super::{BodyVersion, DiskError, ObjectId, Store, io_error};
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A stored object opened for reading. It keeps the version it opened: updating, replacing or
/// removing the object meanwhile does not change what it reads.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let tier = cache::disk::DiskTier::open(dir.path(), 1 << 20)?;
/// # let mut writer = tier.begin(1, b"meta")?;
/// # writer.write(b"0123456789")?;
/// # writer.commit()?;
/// let mut object = tier.open_object(1)?.expect("stored");
/// object.seek(4)?; // a Range request for bytes=4-
/// assert_eq!(object.read_block()?.as_deref(), Some(&b"456789"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DiskObject {
    store: Arc<Store>,
    id: ObjectId,
    serial: u64,
    meta: Vec<u8>,
    body: File,
    body_len: u64,
    /// Body offset of the next byte `read_block` returns.
    position: u64,
}

impl DiskObject {
    pub(super) fn new(
        store: Arc<Store>,
        id: ObjectId,
        serial: u64,
        head: Head,
        body: File,
    ) -> DiskObject {
        DiskObject {
            store,
            id,
            serial,
            meta: head.meta,
            body,
            body_len: head.body_len,
            position: 0,
        }
    }

    /// The id it is stored under.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// Its metadata record, as [`meta`](crate::meta) encoded it.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// The body's length, in bytes.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Which write of the object this is, for
    /// [`DiskTier::update_meta_if`](super::DiskTier::update_meta_if).
    pub fn version(&self) -> BodyVersion {
        BodyVersion(self.serial)
    }

    /// The next block of the body (at most 64 KiB, less after a seek into a block), its
    /// checksum verified before it is returned; `Ok(None)` at the end. A block that does not
    /// match is [`DiskError::Corrupt`]: the object has then been removed, and the caller
    /// should cut the response off.
    pub fn read_block(&mut self) -> Result<Option<Bytes>, DiskError> {
        if self.position >= self.body_len {
            return Ok(None);
        }
        let index = self.position / BLOCK_BYTES as u64;
        let start = index * BLOCK_BYTES as u64;
        // At most BLOCK_BYTES, so the cast is lossless.
        let len = (self.body_len - start).min(BLOCK_BYTES as u64) as usize;
        let mut block = vec![0u8; len + 4];
        let intact = match self.body.read_exact_at(&mut block, block_offset(index)) {
            Ok(()) => split_block(&block)
                .is_some_and(|(data, crc)| block_crc(self.id, self.serial, index, data) == crc),
            // Shorter than it was when opened: cut by someone else.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
            Err(e) => return Err(io_error(&self.store.body_path(self.id, self.serial))(e)),
        };
        if !intact {
            self.store.discard(self.id, self.serial);
            return Err(DiskError::Corrupt {
                id: self.id,
                offset: start,
            });
        }
        block.truncate(len);
        let skip = (self.position - start) as usize;
        self.position = start + len as u64;
        Ok(Some(Bytes::from(block).slice(skip..)))
    }

    /// Positions reading at a body offset (for HTTP Range requests). The body's length is a
    /// valid offset: reading there gives `Ok(None)`.
    pub fn seek(&mut self, offset: u64) -> Result<(), DiskError> {
        if offset > self.body_len {
            return Err(DiskError::OutOfRange {
                offset,
                body_len: self.body_len,
            });
        }
        self.position = offset;
        Ok(())
    }
}

impl std::fmt::Debug for DiskObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskObject")
            .field("id", &format_args!("{:032x}", self.id))
            .field("meta_len", &self.meta.len())
            .field("body_len", &self.body_len)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

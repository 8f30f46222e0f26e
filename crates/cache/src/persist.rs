//! Between the cache and its disk tier: writing stored responses (whole, or streamed as they
//! arrive) and reading them back. Everything here blocks; callers run it off the async threads.

use crate::disk::{DiskError, DiskObject, DiskTier};
use crate::key::ObjectId;
use crate::meta::{self, Meta};
use crate::object::StoredObject;
use crate::vary::VarySpec;
use crate::write_order::Ticket;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Chunks a streamed write may have queued before the disk catches up. Past it the write is
/// abandoned rather than the client slowed down: the cache is an optimisation, the response
/// is not.
pub const STREAM_QUEUE: usize = 256;

/// Writes a whole object (a response already in memory).
pub fn write_whole(
    disk: &DiskTier,
    id: ObjectId,
    meta: &[u8],
    body: &[u8],
) -> Result<(), DiskError> {
    let mut writer = disk.begin(id, meta)?;
    writer.write(body)?;
    writer.commit()
}

/// A URL's Vary spec, kept under its primary id.
pub fn write_vary(disk: &DiskTier, primary: ObjectId, spec: &VarySpec) -> Result<(), DiskError> {
    write_whole(disk, primary, &meta::encode_vary(spec), &[])
}

enum Message {
    Chunk(Bytes),
    Commit,
}

/// A body being streamed to the disk tier from a thread of its own.
pub struct StreamWrite {
    sender: Option<SyncSender<Message>>,
}

impl StreamWrite {
    /// Starts writing the object `ticket` changes; `done(true)` runs on the writing thread once
    /// it is committed, `done(false)` if it was abandoned, failed, or a later change to the
    /// object overtook it (the commit waits its turn, `write_order`).
    pub fn start(
        disk: Arc<DiskTier>,
        ticket: Ticket,
        meta: Vec<u8>,
        done: Box<dyn FnOnce(bool) + Send>,
    ) -> StreamWrite {
        let (sender, receiver) = sync_channel(STREAM_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("cache-disk-write".into())
            .spawn(move || {
                let committed = stream_to_disk(&disk, ticket, &meta, receiver);
                match &committed {
                    Err(e) => tracing::debug!(error = %e, "cache: streamed disk write abandoned"),
                    Ok(false) => tracing::debug!("cache: streamed disk write overtaken"),
                    Ok(true) => {}
                }
                done(matches!(committed, Ok(true)));
            });
        StreamWrite {
            // No thread, no write: every push reports failure.
            sender: spawned.ok().map(|_| sender),
        }
    }

    /// Queues a chunk; `false` when the write is abandoned (the disk fell behind, or failed).
    pub fn push(&mut self, chunk: Bytes) -> bool {
        let Some(sender) = &self.sender else {
            return false;
        };
        match sender.try_send(Message::Chunk(chunk)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.sender = None;
                false
            }
        }
    }

    /// The body is complete: commit it. Dropping a `StreamWrite` instead abandons it.
    pub fn commit(mut self) {
        if let Some(sender) = self.sender.take() {
            // A full queue still takes the commit once the writer drains a chunk.
            let _ = sender.send(Message::Commit);
        }
    }
}

/// `Ok(false)`: complete, but a later change to the object came first, so not committed.
fn stream_to_disk(
    disk: &DiskTier,
    ticket: Ticket,
    meta: &[u8],
    receiver: Receiver<Message>,
) -> Result<bool, DiskError> {
    let mut writer = disk.begin(ticket.id(), meta)?;
    loop {
        match receiver.recv() {
            Ok(Message::Chunk(chunk)) => writer.write(&chunk)?,
            Ok(Message::Commit) => {
                return match ticket.apply(|| writer.commit()) {
                    Some(committed) => committed.map(|()| true),
                    None => Ok(false),
                };
            }
            // The sender went away without a commit: the writer's drop removes the temp file.
            Err(_) => return Err(DiskError::Closed),
        }
    }
}

/// What reading an id back from the disk tier gives.
pub enum Read {
    /// A response with its body (it fits the memory tier).
    Small(StoredObject),
    /// A response too large for memory: its metadata, and the open body to stream.
    Large(StoredObject, DiskObject),
    /// A URL's Vary spec.
    Vary(VarySpec),
    /// Nothing is stored under the id.
    Absent,
}

/// Reads `id`. Purge marks from another run are reset (`run` is this process's), so every purge
/// logged since applies. Bodies up to `small_limit` are read whole.
pub fn read(disk: &DiskTier, id: ObjectId, run: u64, small_limit: u64) -> Result<Read, DiskError> {
    let Some(mut handle) = disk.open_object(id)? else {
        return Ok(Read::Absent);
    };
    match meta::decode(handle.meta()) {
        Some(Meta::Vary(spec)) => Ok(Read::Vary(spec)),
        Some(Meta::Object {
            object,
            run: stored_run,
        }) => {
            let mut object = *object;
            if stored_run != run {
                object.purge_mark = 0;
            }
            if handle.body_len() > small_limit {
                return Ok(Read::Large(object, handle));
            }
            let mut body = BytesMut::with_capacity(handle.body_len() as usize);
            while let Some(block) = handle.read_block()? {
                body.extend_from_slice(&block);
            }
            object.body = body.freeze();
            Ok(Read::Small(object))
        }
        None => {
            // Written by another version, or not ours: not served, and out of the way.
            disk.remove(id)?;
            Ok(Read::Absent)
        }
    }
}

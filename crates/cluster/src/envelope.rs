//! A signed message: what every value the cluster writes to Redis is. The signature covers the
//! kind, the sending node, the version and the body, so a message cannot be replayed as
//! another kind, another node's, or another version, and a Redis that anyone can write to
//! cannot inject one.
//!
//! ```text
//! "PAL1" | kind length (u8) | kind | node length (u8) | node | version (u64 BE)
//!        | epoch (u64 BE) | body length (u32 BE) | body | HMAC-SHA256 over everything before it (32)
//! ```
//!
//! The epoch names the control node's run that numbered the version: a new control node (one
//! started from a copy of the store, say) numbers from its store, and edges that see another
//! epoch load its snapshot whatever its version.
//!
//! ```text
//! ```

use crate::secret::{Keys, TAG_BYTES};

const MAGIC: &[u8; 4] = b"PAL1";

/// The largest body a message may carry: a snapshot of 100,000 sites is about 30 MB.
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// What it is (`snapshot`, `sites`, `resync`, `heartbeat`, ...).
    pub kind: String,
    /// The node that sent it.
    pub node: String,
    /// The configuration version it makes or reports.
    pub version: u64,
    /// The control node's run that numbered `version` (0 where no version is meant).
    pub epoch: u64,
    /// What it says.
    pub body: Vec<u8>,
}

/// Why a message was refused; the name is the `reason` label of
/// `palisade_cluster_messages_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not laid out as a message.
    #[error("malformed")]
    Malformed,
    /// Its signature does not verify under the cluster's key.
    #[error("signature")]
    Signature,
    /// It verifies but is not what was expected where it was found (another kind or version).
    #[error("unexpected")]
    Unexpected,
    /// Its body does not decode to what its kind says.
    #[error("body")]
    Body,
}

impl Refused {
    /// Every reason, for metrics that show each from the start.
    pub const ALL: [Refused; 4] = [
        Refused::Malformed,
        Refused::Signature,
        Refused::Unexpected,
        Refused::Body,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Signature => "signature",
            Refused::Unexpected => "unexpected",
            Refused::Body => "body",
        }
    }
}

impl Envelope {
    /// A message of `kind` from `node`.
    pub fn new(kind: &str, node: &str, version: u64, body: Vec<u8>) -> Envelope {
        Envelope {
            kind: kind.into(),
            node: node.into(),
            version,
            epoch: 0,
            body,
        }
    }

    /// The same message, its version numbered by the control node's run `epoch`.
    pub fn in_epoch(mut self, epoch: u64) -> Envelope {
        self.epoch = epoch;
        self
    }

    /// The signed bytes.
    pub fn seal(&self, keys: &Keys) -> Vec<u8> {
        let kind = &self.kind.as_bytes()[..self.kind.len().min(255)];
        let node = &self.node.as_bytes()[..self.node.len().min(255)];
        let mut out =
            Vec::with_capacity(4 + 2 + kind.len() + node.len() + 12 + self.body.len() + 32);
        out.extend_from_slice(MAGIC);
        out.push(kind.len() as u8);
        out.extend_from_slice(kind);
        out.push(node.len() as u8);
        out.extend_from_slice(node);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        let tag = keys.sign(&out);
        out.extend_from_slice(&tag);
        out
    }

    /// Checks and reads a message.
    pub fn open(bytes: &[u8], keys: &Keys) -> Result<Envelope, Refused> {
        let signed_len = bytes
            .len()
            .checked_sub(TAG_BYTES)
            .ok_or(Refused::Malformed)?;
        let (signed, tag) = bytes.split_at(signed_len);
        let mut reader = Reader(signed);
        if reader.take(4)? != MAGIC {
            return Err(Refused::Malformed);
        }
        let kind_len = reader.take(1)?[0] as usize;
        let kind = reader.take(kind_len)?;
        let node_len = reader.take(1)?[0] as usize;
        let node = reader.take(node_len)?;
        let version =
            u64::from_be_bytes(reader.take(8)?.try_into().map_err(|_| Refused::Malformed)?);
        let epoch = u64::from_be_bytes(reader.take(8)?.try_into().map_err(|_| Refused::Malformed)?);
        let body_len =
            u32::from_be_bytes(reader.take(4)?.try_into().map_err(|_| Refused::Malformed)?)
                as usize;
        if body_len > MAX_BODY_BYTES || reader.0.len() != body_len {
            return Err(Refused::Malformed);
        }
        // Checked before anything in it is believed.
        if !keys.verify(signed, tag) {
            return Err(Refused::Signature);
        }
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Refused::Malformed);
        Ok(Envelope {
            kind: text(kind)?,
            node: text(node)?,
            version,
            epoch,
            body: reader.0.to_vec(),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Refused::Malformed)?;
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_secret(&[7; 32])
    }

    #[test]
    fn a_message_round_trips_and_every_changed_byte_is_refused() {
        let message = Envelope::new("sites", "edge-1", 42, b"[1,2,3]".to_vec()).in_epoch(7);
        let bytes = message.seal(&keys());
        assert_eq!(Envelope::open(&bytes, &keys()).unwrap(), message);
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            assert!(Envelope::open(&changed, &keys()).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_forger_without_the_secret_is_refused_for_its_signature() {
        let forged =
            Envelope::new("sites", "control", 9, b"[]".to_vec()).seal(&Keys::from_secret(&[8; 32]));
        assert_eq!(Envelope::open(&forged, &keys()), Err(Refused::Signature));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        for bytes in [
            &b""[..],
            b"PAL1",
            &[0u8; 31],
            &[0xff; 64],
            b"PAL1\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ] {
            assert_eq!(Envelope::open(bytes, &keys()), Err(Refused::Malformed));
        }
    }
}

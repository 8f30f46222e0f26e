//! The bytes of the disk tier's files: their names, the head file, and the body file's blocks
//! and trailer. Pure functions over byte slices, no I/O, so every parser can be fed garbage.
//!
//! All integers are little-endian. Every check that fails makes a parser return `None`: the
//! caller treats the object as absent and removes it.

use super::ObjectId;

/// Body bytes per checksummed block: the unit a reader verifies and returns.
pub(super) const BLOCK_BYTES: usize = 64 * 1024;

/// Largest metadata a head file carries. Stored response headers are a few KiB; the cap keeps a
/// garbage head file from making a reader allocate the size the file claims.
pub(super) const MAX_META_BYTES: usize = 1024 * 1024;

/// Bumped when a layout changes; files of another version are treated as torn and removed
/// (a cache may drop its contents; it must not misread them).
const FORMAT_VERSION: u32 = 1;
const HEAD_MAGIC: [u8; 4] = *b"PDH1";
const TRAILER_MAGIC: [u8; 4] = *b"PDB1";
const CRC_BYTES: usize = 4;

/// magic, version, id, serial, body_len, meta_len.
const HEAD_FIXED_BYTES: usize = 4 + 4 + 16 + 8 + 8 + 4;
/// Bytes of a head file besides its metadata.
pub(super) const HEAD_OVERHEAD_BYTES: u64 = (HEAD_FIXED_BYTES + CRC_BYTES) as u64;
/// magic, version, id, serial, body_len, crc.
pub(super) const TRAILER_BYTES: usize = 4 + 4 + 16 + 8 + 8 + CRC_BYTES;

/// What a valid head file says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Head {
    /// Serial number of the commit that wrote the body; names the body file.
    pub serial: u64,
    pub body_len: u64,
    pub meta: Vec<u8>,
}

/// A file name inside a fan-out directory.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FileName {
    Head(ObjectId),
    Body(ObjectId, u64),
}

/// The fan-out directory of an object: its id's top byte, so 256 directories share the
/// objects evenly (ids are hashes).
pub(super) fn fan_out(id: ObjectId) -> u8 {
    (id >> 120) as u8
}

pub(super) fn fan_out_dir_name(byte: u8) -> String {
    format!("{byte:02x}")
}

pub(super) fn head_file_name(id: ObjectId) -> String {
    format!("{id:032x}.head")
}

pub(super) fn body_file_name(id: ObjectId, serial: u64) -> String {
    format!("{id:032x}-{serial:016x}.body")
}

/// Parses the names [`head_file_name`] and [`body_file_name`] make, and nothing else.
pub(super) fn parse_file_name(name: &str) -> Option<FileName> {
    if let Some(id) = name.strip_suffix(".head") {
        return Some(FileName::Head(parse_hex(id, 32)?));
    }
    let (id, serial) = name.strip_suffix(".body")?.split_once('-')?;
    let serial = u64::try_from(parse_hex(serial, 16)?).ok()?;
    Some(FileName::Body(parse_hex(id, 32)?, serial))
}

/// Exactly `digits` lowercase hex digits (`from_str_radix` alone would also take a sign).
fn parse_hex(text: &str, digits: usize) -> Option<u128> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != digits || !text.bytes().all(lower_hex) {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// Number of blocks a body of `body_len` bytes is cut into.
pub(super) fn block_count(body_len: u64) -> u64 {
    body_len.div_ceil(BLOCK_BYTES as u64)
}

/// Where block `index` starts in the body file: blocks are stored back to back, each followed
/// by its checksum.
pub(super) fn block_offset(index: u64) -> u64 {
    index * (BLOCK_BYTES + CRC_BYTES) as u64
}

pub(super) fn body_file_len(body_len: u64) -> u64 {
    body_len + block_count(body_len) * CRC_BYTES as u64 + TRAILER_BYTES as u64
}

pub(super) fn head_file_len(meta_len: usize) -> u64 {
    HEAD_OVERHEAD_BYTES + meta_len as u64
}

/// The unit a filesystem allocates files in: 4 KiB on ext4 and XFS by default. A file of any
/// length up to it takes one.
pub(super) const ALLOCATION_UNIT: u64 = 4096;

/// Disk space an object takes (both files, each rounded up to [`ALLOCATION_UNIT`]): what the
/// tier's bound counts, so `max_bytes` bounds real disk use rather than file lengths (a
/// 100-byte response takes two units, 8 KiB).
pub(super) fn object_bytes(meta_len: usize, body_len: u64) -> u64 {
    allocated(head_file_len(meta_len)) + allocated(body_file_len(body_len))
}

/// `len` rounded up to whole allocation units.
pub(super) fn allocated(len: u64) -> u64 {
    len.div_ceil(ALLOCATION_UNIT) * ALLOCATION_UNIT
}

/// A block's checksum. It covers the object's id, the body's serial and the block's index as
/// well as the data, so a block that is valid somewhere else (another object's, an older
/// version's, or a neighbour's, as stale disk blocks after a crash can be) does not pass here.
pub(super) fn block_crc(id: ObjectId, serial: u64, index: u64, data: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&id.to_le_bytes());
    crc.update(&serial.to_le_bytes());
    crc.update(&index.to_le_bytes());
    crc.update(data);
    crc.finalize()
}

/// The stored checksum at the end of a block read with its checksum.
pub(super) fn split_block(block_and_crc: &[u8]) -> Option<(&[u8], u32)> {
    let (data, crc) = block_and_crc.split_last_chunk::<CRC_BYTES>()?;
    Some((data, u32::from_le_bytes(*crc)))
}

pub(super) fn encode_head(id: ObjectId, serial: u64, body_len: u64, meta: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_FIXED_BYTES + meta.len() + CRC_BYTES);
    out.extend_from_slice(&HEAD_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    // Callers refuse metadata above MAX_META_BYTES, far below u32::MAX.
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a whole head file that should belong to object `id`. Takes the bytes by value so
/// the metadata is returned without a copy.
pub(super) fn decode_head(id: ObjectId, mut bytes: Vec<u8>) -> Option<Head> {
    let (covered, crc) = bytes.split_last_chunk::<CRC_BYTES>()?;
    if crc32fast::hash(covered) != u32::from_le_bytes(*crc) {
        return None;
    }
    let mut fields = Fields(covered);
    if fields.take::<4>()? != HEAD_MAGIC
        || u32::from_le_bytes(fields.take()?) != FORMAT_VERSION
        || u128::from_le_bytes(fields.take()?) != id
    {
        return None;
    }
    let serial = u64::from_le_bytes(fields.take()?);
    let body_len = u64::from_le_bytes(fields.take()?);
    let meta_len = u32::from_le_bytes(fields.take()?) as usize;
    if fields.0.len() != meta_len || meta_len > MAX_META_BYTES {
        return None;
    }
    bytes.truncate(HEAD_FIXED_BYTES + meta_len);
    bytes.drain(..HEAD_FIXED_BYTES);
    Some(Head {
        serial,
        body_len,
        meta: bytes,
    })
}

pub(super) fn encode_trailer(id: ObjectId, serial: u64, body_len: u64) -> [u8; TRAILER_BYTES] {
    let mut out = [0u8; TRAILER_BYTES];
    out[0..4].copy_from_slice(&TRAILER_MAGIC);
    out[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[8..24].copy_from_slice(&id.to_le_bytes());
    out[24..32].copy_from_slice(&serial.to_le_bytes());
    out[32..40].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&out[..40]);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Whether `bytes` is the trailer of object `id`'s body `serial` of `body_len` bytes: the
/// body file was written to its end.
pub(super) fn trailer_matches(bytes: &[u8], id: ObjectId, serial: u64, body_len: u64) -> bool {
    bytes == encode_trailer(id, serial, body_len)
}

/// Fixed-size fields read one after the other.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (field, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ObjectId = 0xab12_0000_0000_0000_0000_0000_0000_00cd;

    #[test]
    fn head_round_trips_and_any_flipped_bit_is_refused() {
        let bytes = encode_head(ID, 7, 123_456, b"meta data");
        let head = decode_head(ID, bytes.clone()).expect("valid head");
        assert_eq!(
            head,
            Head {
                serial: 7,
                body_len: 123_456,
                meta: b"meta data".to_vec()
            }
        );
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[byte] ^= 1 << bit;
                assert_eq!(decode_head(ID, flipped), None, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn head_of_another_object_truncated_or_extended_is_refused() {
        let bytes = encode_head(ID, 7, 10, b"meta");
        assert_eq!(decode_head(ID + 1, bytes.clone()), None);
        for len in 0..bytes.len() {
            assert_eq!(decode_head(ID, bytes[..len].to_vec()), None, "length {len}");
        }
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(decode_head(ID, longer), None);
    }

    #[test]
    fn trailer_binds_id_serial_and_length() {
        let trailer = encode_trailer(ID, 3, 99);
        assert!(trailer_matches(&trailer, ID, 3, 99));
        assert!(!trailer_matches(&trailer, ID + 1, 3, 99));
        assert!(!trailer_matches(&trailer, ID, 4, 99));
        assert!(!trailer_matches(&trailer, ID, 3, 98));
        assert!(!trailer_matches(&[0; TRAILER_BYTES], ID, 3, 99));
    }

    #[test]
    fn block_crc_depends_on_position_and_owner() {
        let data = [5u8; 100];
        let crc = block_crc(ID, 1, 0, &data);
        assert_ne!(crc, block_crc(ID, 1, 1, &data));
        assert_ne!(crc, block_crc(ID, 2, 0, &data));
        assert_ne!(crc, block_crc(ID + 1, 1, 0, &data));
        // A block of zeros with a zero checksum, what a crash can leave, does not pass.
        assert_ne!(block_crc(ID, 1, 0, &[0; BLOCK_BYTES]), 0);
    }

    #[test]
    fn names_round_trip_and_foreign_names_are_not_ours() {
        assert_eq!(
            parse_file_name(&head_file_name(ID)),
            Some(FileName::Head(ID))
        );
        assert_eq!(
            parse_file_name(&body_file_name(ID, 0x1f)),
            Some(FileName::Body(ID, 0x1f))
        );
        assert_eq!(fan_out_dir_name(fan_out(ID)), "ab");
        for foreign in [
            "README",
            ".head",
            "ab.head",
            "+b120000000000000000000000000000cd.head",
            "AB120000000000000000000000000000CD.head",
            "ab120000000000000000000000000000cd.head.tmp",
            "ab120000000000000000000000000000cd-1.body",
            "ab120000000000000000000000000000cd-000000000000001f",
            "ab120000000000000000000000000000cd_000000000000001f.body",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn file_lengths_count_checksums_and_trailer() {
        assert_eq!(body_file_len(0), TRAILER_BYTES as u64);
        assert_eq!(body_file_len(1), 1 + 4 + TRAILER_BYTES as u64);
        let two_blocks = BLOCK_BYTES as u64 + 1;
        assert_eq!(
            body_file_len(two_blocks),
            two_blocks + 8 + TRAILER_BYTES as u64
        );
        assert_eq!(block_offset(2), 2 * (BLOCK_BYTES as u64 + 4));
        assert_eq!(
            head_file_len(10),
            encode_head(ID, 1, 0, &[0; 10]).len() as u64
        );
    }
}

//! The tier's behaviour, driven through its public API against a real directory, with files
//! damaged by hand the way crashes, bad disks and stray tools damage them.

use super::format::{BLOCK_BYTES, TRAILER_BYTES, allocated, block_offset, head_file_len};
use super::*;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicUsize;
use tempfile::TempDir;

const MIB: u64 = 1024 * 1024;

/// An id in fan-out directory `n`.
fn id(n: u8) -> ObjectId {
    u128::from(n) << 120 | u128::from(n)
}

/// A body whose bytes depend on `seed` and on their position, so a misplaced block shows.
fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn open(dir: &TempDir, max_bytes: u64) -> DiskTier {
    DiskTier::open(dir.path(), max_bytes).expect("open the tier")
}

fn store(tier: &DiskTier, id: ObjectId, meta: &[u8], body: &[u8]) {
    let mut writer = tier.begin(id, meta).expect("begin");
    for chunk in body.chunks(10_000) {
        writer.write(chunk).expect("write");
    }
    writer.commit().expect("commit");
}

fn read_rest(object: &mut DiskObject) -> Result<Vec<u8>, DiskError> {
    let mut out = Vec::new();
    while let Some(block) = object.read_block()? {
        assert!(!block.is_empty() && block.len() <= BLOCK_BYTES);
        out.extend_from_slice(&block);
    }
    Ok(out)
}

fn read_object(tier: &DiskTier, id: ObjectId) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut object = tier.open_object(id).expect("open_object")?;
    let body = read_rest(&mut object).expect("read the body");
    assert_eq!(body.len() as u64, object.body_len());
    Some((object.meta().to_vec(), body))
}

fn head_path(dir: &TempDir, id: ObjectId) -> PathBuf {
    dir.path()
        .join(fan_out_dir_name(fan_out(id)))
        .join(head_file_name(id))
}

fn body_paths(dir: &TempDir, id: ObjectId) -> Vec<PathBuf> {
    let prefix = format!("{id:032x}-");
    let fan_out_dir = dir.path().join(fan_out_dir_name(fan_out(id)));
    let Ok(entries) = fs::read_dir(fan_out_dir) else {
        return vec![];
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .collect();
    paths.sort();
    paths
}

fn body_path(dir: &TempDir, id: ObjectId) -> PathBuf {
    let paths = body_paths(dir, id);
    assert_eq!(paths.len(), 1, "one body file for {id:x}: {paths:?}");
    paths.into_iter().next().unwrap()
}

fn no_files_of(dir: &TempDir, id: ObjectId) -> bool {
    !head_path(dir, id).exists() && body_paths(dir, id).is_empty()
}

fn tmp_files(dir: &TempDir) -> usize {
    fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count()
}

fn flip_byte(path: &Path, offset: u64) {
    let file = File::options().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], offset).unwrap();
}

fn set_mtime(path: &Path, ago: Duration) {
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - ago).unwrap();
}

/// The index's objects and bytes are exactly the files in the fan-out directories (their
/// lengths in allocation units), and no temp file is left.
fn assert_index_matches_files(tier: &DiskTier, dir: &TempDir) {
    let (mut heads, mut bytes) = (0, 0);
    for byte in 0..=u8::MAX {
        let Ok(entries) = fs::read_dir(dir.path().join(fan_out_dir_name(byte))) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            bytes += allocated(entry.metadata().unwrap().len());
            heads += usize::from(entry.file_name().to_str().unwrap().ends_with(".head"));
        }
    }
    assert_eq!(heads, tier.len(), "objects in the index and head files");
    assert_eq!(bytes, tier.used_bytes(), "used_bytes and bytes of files");
    assert_eq!(tmp_files(dir), 0, "temp files left");
}

#[test]
fn small_and_empty_bodies_round_trip() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta one", b"hello");
    store(&tier, id(2), b"", b"");
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"meta one".to_vec(), b"hello".to_vec()))
    );
    assert_eq!(read_object(&tier, id(2)), Some((vec![], vec![])));
    assert_eq!(tier.len(), 2);
    assert!(tier.contains(id(1)) && !tier.contains(id(3)));
    assert!(tier.open_object(id(3)).unwrap().is_none());
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn multi_block_body_round_trips_whatever_the_chunk_sizes() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, 4 * MIB);
    let long = body(3 * BLOCK_BYTES + 12_345, 9);
    for (n, chunk) in [1usize, 999, BLOCK_BYTES, BLOCK_BYTES + 1, long.len()]
        .into_iter()
        .enumerate()
    {
        let mut writer = tier.begin(id(n as u8), b"m").unwrap();
        for piece in long.chunks(chunk) {
            writer.write(piece).unwrap();
        }
        writer.write(&[]).unwrap();
        assert_eq!(writer.body_len(), long.len() as u64);
        writer.commit().unwrap();
        let mut object = tier.open_object(id(n as u8)).unwrap().unwrap();
        let first = object.read_block().unwrap().unwrap();
        assert_eq!(first.len(), BLOCK_BYTES, "a full block at a time");
        let mut read = first.to_vec();
        read.extend(read_rest(&mut object).unwrap());
        assert!(read == long, "chunks of {chunk}");
    }
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn objects_survive_a_restart_and_scan_lists_them() {
    let dir = TempDir::new().unwrap();
    let (len, used) = {
        let tier = open(&dir, 4 * MIB);
        for n in 0..5 {
            store(&tier, id(n), &[n; 30], &body(n as usize * 50_000, n));
        }
        (tier.len(), tier.used_bytes())
    };
    let tier = open(&dir, 4 * MIB);
    assert_eq!((tier.len(), tier.used_bytes()), (len, used));
    assert_eq!(len, 5);
    for n in 0..5 {
        assert_eq!(
            read_object(&tier, id(n)),
            Some((vec![n; 30], body(n as usize * 50_000, n)))
        );
    }
    let mut scanned: Vec<(ObjectId, Vec<u8>)> = tier.scan().collect();
    scanned.sort();
    let expected: Vec<(ObjectId, Vec<u8>)> = (0..5).map(|n| (id(n), vec![n; 30])).collect();
    assert_eq!(scanned, expected);
    // New writes after a restart do not reuse a serial that names a kept body.
    store(&tier, id(7), b"new", b"after restart");
    assert_eq!(read_object(&tier, id(0)), Some((vec![0; 30], vec![])));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn nothing_is_visible_before_commit() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"old", b"old body");
    let mut writer = tier.begin(id(1), b"new").unwrap();
    writer.write(&body(100_000, 1)).unwrap();
    let mut fresh = tier.begin(id(2), b"new").unwrap();
    fresh.write(b"x").unwrap();
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"old".to_vec(), b"old body".to_vec()))
    );
    assert!(!tier.contains(id(2)));
    assert!(tier.open_object(id(2)).unwrap().is_none());
    assert_eq!(tier.scan().count(), 1);
    writer.commit().unwrap();
    fresh.commit().unwrap();
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"new".to_vec(), body(100_000, 1)))
    );
    assert!(tier.contains(id(2)));
    assert_eq!(
        body_paths(&dir, id(1)).len(),
        1,
        "the replaced body is gone"
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn dropped_writer_leaves_no_file() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let mut writer = tier.begin(id(1), b"meta").unwrap();
    writer.write(&body(200_000, 1)).unwrap();
    assert_eq!(tmp_files(&dir), 1);
    drop(writer);
    assert_eq!(tmp_files(&dir), 0);
    assert!(!tier.contains(id(1)) && no_files_of(&dir, id(1)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn crashed_writer_temp_files_are_removed_at_open() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(2), b"kept", b"kept body");
    let mut writer = tier.begin(id(1), b"meta").unwrap();
    writer.write(&body(100_000, 1)).unwrap();
    // What a crash leaves: the writer never finishes and never cleans up.
    std::mem::forget(writer);
    drop(tier);
    fs::write(
        dir.path().join(TMP_DIR).join("00000000000000ff.head"),
        b"half a head",
    )
    .unwrap();
    fs::create_dir(dir.path().join(TMP_DIR).join("stray")).unwrap();
    assert_eq!(tmp_files(&dir), 3);

    let tier = open(&dir, MIB);
    assert_eq!(tmp_files(&dir), 0);
    assert!(!tier.contains(id(1)));
    assert_eq!(
        read_object(&tier, id(2)),
        Some((b"kept".to_vec(), b"kept body".to_vec()))
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn torn_body_block_is_never_served() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let long = body(3 * BLOCK_BYTES, 3);
    store(&tier, id(1), b"meta", &long);
    // A byte in the middle of the second block.
    flip_byte(&body_path(&dir, id(1)), block_offset(1) + 500);

    let mut object = tier
        .open_object(id(1))
        .unwrap()
        .expect("head and trailer are intact");
    assert_eq!(
        object.read_block().unwrap().unwrap()[..],
        long[..BLOCK_BYTES]
    );
    match object.read_block() {
        Err(DiskError::Corrupt { id: bad, offset }) => {
            assert_eq!((bad, offset), (id(1), BLOCK_BYTES as u64));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!tier.contains(id(1)));
    assert!(tier.open_object(id(1)).unwrap().is_none());
    assert!(no_files_of(&dir, id(1)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn zeroed_block_with_zeroed_checksum_is_never_served() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", &body(BLOCK_BYTES + 10, 1));
    // What a power loss can leave in a renamed file whose data never reached the disk.
    let path = body_path(&dir, id(1));
    let file = File::options().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0; BLOCK_BYTES + 4], 0).unwrap();
    let mut object = tier.open_object(id(1)).unwrap().unwrap();
    assert!(matches!(
        object.read_block(),
        Err(DiskError::Corrupt { offset: 0, .. })
    ));
    assert!(no_files_of(&dir, id(1)));
}

#[test]
fn flipped_byte_in_meta_makes_object_absent() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"stored headers", b"body");
    let meta_offset = head_file_len(0) - 4;
    flip_byte(&head_path(&dir, id(1)), meta_offset + 3);
    assert!(tier.open_object(id(1)).unwrap().is_none());
    assert!(!tier.contains(id(1)) && no_files_of(&dir, id(1)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn flipped_byte_in_head_fields_makes_object_absent() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", b"body one");
    store(&tier, id(2), b"meta", b"body two");
    // The serial of one, the body length of the other.
    flip_byte(&head_path(&dir, id(1)), 24);
    flip_byte(&head_path(&dir, id(2)), 32);
    drop(tier);
    let tier = open(&dir, MIB);
    assert!(tier.is_empty());
    assert!(no_files_of(&dir, id(1)) && no_files_of(&dir, id(2)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn flipped_byte_in_trailer_makes_object_absent() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", &body(1000, 1));
    let path = body_path(&dir, id(1));
    let len = fs::metadata(&path).unwrap().len();
    flip_byte(&path, len - TRAILER_BYTES as u64 + 30);
    assert!(tier.open_object(id(1)).unwrap().is_none());
    assert!(!tier.contains(id(1)) && no_files_of(&dir, id(1)));
}

#[test]
fn truncated_body_is_absent_and_removed() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", &body(2 * BLOCK_BYTES, 1));
    let path = body_path(&dir, id(1));
    let file = File::options().write(true).open(&path).unwrap();
    file.set_len(BLOCK_BYTES as u64).unwrap();
    assert!(tier.open_object(id(1)).unwrap().is_none());
    assert!(!tier.contains(id(1)) && no_files_of(&dir, id(1)));

    // Cut while a reader has it open: the next block is refused, not served short.
    store(&tier, id(2), b"meta", &body(2 * BLOCK_BYTES, 2));
    let mut object = tier.open_object(id(2)).unwrap().unwrap();
    let path = body_path(&dir, id(2));
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(matches!(
        object.read_block(),
        Err(DiskError::Corrupt { offset: 0, .. })
    ));
    assert!(no_files_of(&dir, id(2)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn truncated_files_are_removed_at_open() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    for n in 1..=4 {
        store(&tier, id(n), b"meta", &body(70_000, n));
    }
    let cut = |path: PathBuf, len: u64| {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    };
    cut(head_path(&dir, id(1)), 10);
    cut(head_path(&dir, id(2)), 0);
    cut(body_path(&dir, id(3)), 70_000);
    drop(tier);

    let tier = open(&dir, MIB);
    assert_eq!(tier.len(), 1);
    for n in 1..=3 {
        assert!(no_files_of(&dir, id(n)), "object {n}");
    }
    assert_eq!(
        read_object(&tier, id(4)),
        Some((b"meta".to_vec(), body(70_000, 4)))
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn garbage_and_foreign_files_are_removed_at_open() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", b"kept");
    store(&tier, id(2), b"meta", b"its head goes astray");
    drop(tier);
    let fan_out_dir = |n: u8| dir.path().join(fan_out_dir_name(n));
    for n in 3..=9 {
        fs::create_dir_all(fan_out_dir(n)).unwrap();
    }
    // Garbage named like a head, and like a body with no head.
    fs::write(fan_out_dir(3).join(head_file_name(id(3))), body(5000, 3)).unwrap();
    fs::write(fan_out_dir(4).join(body_file_name(id(4), 1)), body(5000, 4)).unwrap();
    // A valid head in the wrong fan-out directory.
    fs::rename(
        head_path(&dir, id(2)),
        fan_out_dir(9).join(head_file_name(id(2))),
    )
    .unwrap();
    // Files and a directory that are not ours, including one named like a head.
    fs::write(fan_out_dir(5).join("README"), b"hello").unwrap();
    fs::create_dir(fan_out_dir(6).join(head_file_name(id(6)))).unwrap();
    fs::write(
        fan_out_dir(6).join(head_file_name(id(6))).join("inside"),
        b"x",
    )
    .unwrap();
    // The top directory is the operator's: what is not ours stays, even when linked to.
    fs::write(dir.path().join("notes.txt"), b"operator's").unwrap();
    std::os::unix::fs::symlink(dir.path().join("notes.txt"), fan_out_dir(7).join("link")).unwrap();

    let tier = open(&dir, MIB);
    assert_eq!(tier.len(), 1);
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"meta".to_vec(), b"kept".to_vec()))
    );
    for n in [2, 3, 4, 5, 6, 7, 9] {
        let entries = fs::read_dir(fan_out_dir(n)).unwrap().count();
        assert_eq!(entries, 0, "fan-out directory {n}");
    }
    assert_eq!(
        fs::read(dir.path().join("notes.txt")).unwrap(),
        b"operator's"
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn eviction_keeps_the_bound_and_drops_the_least_recently_used() {
    let dir = TempDir::new().unwrap();
    let one = object_bytes(4, 100_000);
    let tier = open(&dir, 3 * one + one / 2);
    for n in 1..=3 {
        store(&tier, id(n), b"meta", &body(100_000, n));
    }
    assert_eq!(tier.used_bytes(), 3 * one);
    // 1 is read, so 2 is now the least recently used.
    assert!(tier.open_object(id(1)).unwrap().is_some());
    store(&tier, id(4), b"meta", &body(100_000, 4));
    assert!(tier.used_bytes() <= tier.max_bytes());
    assert!(!tier.contains(id(2)) && no_files_of(&dir, id(2)));
    assert!(tier.contains(id(1)) && tier.contains(id(3)) && tier.contains(id(4)));
    // An object the size of two others pushes out the two oldest, 3 then 1.
    store(&tier, id(5), b"meta", &body(250_000, 5));
    assert!(tier.used_bytes() <= tier.max_bytes());
    assert!(!tier.contains(id(3)) && !tier.contains(id(1)));
    assert!(tier.contains(id(4)) && tier.contains(id(5)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn restart_takes_recency_from_head_file_mtimes() {
    let dir = TempDir::new().unwrap();
    let one = object_bytes(4, 50_000);
    let tier = open(&dir, 3 * one);
    for n in 1..=3 {
        store(&tier, id(n), b"meta", &body(50_000, n));
    }
    drop(tier);
    set_mtime(&head_path(&dir, id(1)), Duration::from_secs(3 * 3600));
    set_mtime(&head_path(&dir, id(2)), Duration::from_secs(3600));
    set_mtime(&head_path(&dir, id(3)), Duration::from_secs(2 * 3600));

    let tier = open(&dir, 3 * one);
    store(&tier, id(4), b"meta", &body(50_000, 4));
    assert!(!tier.contains(id(1)), "the oldest stamp goes first");
    store(&tier, id(5), b"meta", &body(50_000, 5));
    assert!(!tier.contains(id(3)), "then the next oldest");
    assert!(tier.contains(id(2)));
}

#[test]
fn opening_an_object_refreshes_a_stale_access_stamp() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", b"body");
    let path = head_path(&dir, id(1));
    set_mtime(&path, ACCESS_STAMP_INTERVAL * 2);
    let mtime = || fs::metadata(&path).unwrap().modified().unwrap();
    let stale = mtime();
    assert!(tier.open_object(id(1)).unwrap().is_some());
    let refreshed = mtime();
    assert!(
        refreshed > stale + ACCESS_STAMP_INTERVAL,
        "stamp moved to now"
    );
    // A fresh stamp is left alone: reads cost no write.
    set_mtime(&path, Duration::from_secs(60));
    let recent = mtime();
    assert!(tier.open_object(id(1)).unwrap().is_some());
    assert_eq!(mtime(), recent);
}

#[test]
fn reopening_with_a_smaller_bound_evicts_down_to_it() {
    let dir = TempDir::new().unwrap();
    let one = object_bytes(4, 10_000);
    let tier = open(&dir, MIB);
    for n in 1..=5 {
        store(&tier, id(n), b"meta", &body(10_000, n));
    }
    drop(tier);
    for n in 1..=5u8 {
        set_mtime(
            &head_path(&dir, id(n)),
            Duration::from_secs(60 * (10 - n as u64)),
        );
    }
    let tier = open(&dir, 2 * one);
    assert_eq!(tier.used_bytes(), 2 * one);
    assert!(tier.contains(id(4)) && tier.contains(id(5)));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn object_larger_than_max_is_refused_while_writing() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, 100_000);
    store(&tier, id(2), b"meta", b"small");
    let mut writer = tier.begin(id(1), b"meta").unwrap();
    writer.write(&body(60_000, 1)).unwrap();
    assert!(matches!(
        writer.write(&body(60_000, 1)),
        Err(DiskError::TooLarge { max_bytes: 100_000 })
    ));
    // Refused at that write, before more is buffered or written: the temp file is gone.
    assert_eq!(tmp_files(&dir), 0);
    assert!(matches!(writer.write(b"more"), Err(DiskError::Aborted)));
    assert!(matches!(writer.commit(), Err(DiskError::Aborted)));
    assert!(!tier.contains(id(1)) && no_files_of(&dir, id(1)));
    assert!(tier.contains(id(2)), "a refused object evicts nothing");
    assert!(matches!(
        tier.begin(id(3), &[0; 100_000]),
        Err(DiskError::TooLarge { .. })
    ));
    assert!(matches!(
        tier.begin(id(3), &vec![0; 2 * MAX_META_BYTES]),
        Err(DiskError::MetaTooLarge { .. })
    ));
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn update_meta_keeps_the_body_and_old_readers_keep_their_version() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let long = body(2 * BLOCK_BYTES + 7, 1);
    store(&tier, id(1), b"headers v1", &long);
    let body_file = body_path(&dir, id(1));
    let mut old = tier.open_object(id(1)).unwrap().unwrap();
    let first = old.read_block().unwrap().unwrap();

    assert!(tier.update_meta(id(1), b"headers v2, longer").unwrap());
    assert_eq!(
        body_path(&dir, id(1)),
        body_file,
        "the body was not rewritten"
    );
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"headers v2, longer".to_vec(), long.clone()))
    );
    assert_eq!(old.meta(), b"headers v1");
    let mut rest = first.to_vec();
    rest.extend(read_rest(&mut old).unwrap());
    assert!(rest == long);
    assert_index_matches_files(&tier, &dir);

    assert!(!tier.update_meta(id(2), b"absent").unwrap());
    assert!(!tier.contains(id(2)));
    drop(tier);
    let tier = open(&dir, MIB);
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"headers v2, longer".to_vec(), long))
    );
}

#[test]
fn update_meta_if_applies_only_to_the_version_it_names() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"v1", b"body one");
    let version = tier.open_object(id(1)).unwrap().unwrap().version();
    store(&tier, id(1), b"v2", b"body two");
    assert!(
        !tier
            .update_meta_if(id(1), version, b"revalidated v1")
            .unwrap()
    );
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"v2".to_vec(), b"body two".to_vec()))
    );
    let version = tier.open_object(id(1)).unwrap().unwrap().version();
    assert!(
        tier.update_meta_if(id(1), version, b"revalidated v2")
            .unwrap()
    );
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"revalidated v2".to_vec(), b"body two".to_vec()))
    );
}

#[test]
fn remove_while_reading_lets_the_reader_finish() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let long = body(3 * BLOCK_BYTES, 1);
    store(&tier, id(1), b"meta", &long);
    let mut reader = tier.open_object(id(1)).unwrap().unwrap();
    let mut read = reader.read_block().unwrap().unwrap().to_vec();
    tier.remove(id(1)).unwrap();
    assert!(!tier.contains(id(1)) && no_files_of(&dir, id(1)));
    assert!(tier.open_object(id(1)).unwrap().is_none());
    read.extend(read_rest(&mut reader).unwrap());
    assert!(read == long);
    tier.remove(id(1)).unwrap();
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn replace_while_reading_lets_the_reader_finish_the_old_version() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let old_body = body(2 * BLOCK_BYTES + 1, 1);
    store(&tier, id(1), b"old", &old_body);
    let mut reader = tier.open_object(id(1)).unwrap().unwrap();
    store(&tier, id(1), b"new", &body(BLOCK_BYTES, 2));
    assert_eq!(reader.meta(), b"old");
    assert!(read_rest(&mut reader).unwrap() == old_body);
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"new".to_vec(), body(BLOCK_BYTES, 2)))
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn seek_then_read_returns_the_rest_of_the_body() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let long = body(3 * BLOCK_BYTES + 100, 1);
    store(&tier, id(1), b"meta", &long);
    let mut object = tier.open_object(id(1)).unwrap().unwrap();
    let block = BLOCK_BYTES as u64;
    for offset in [0, 1, block - 1, block, 2 * block + 5, long.len() as u64 - 1] {
        object.seek(offset).unwrap();
        let first = object.read_block().unwrap().unwrap();
        let block_end = (offset / block + 1) * block;
        assert_eq!(
            first.len() as u64,
            block_end.min(long.len() as u64) - offset
        );
        let mut read = first.to_vec();
        read.extend(read_rest(&mut object).unwrap());
        assert!(read[..] == long[offset as usize..], "from offset {offset}");
    }
    object.seek(long.len() as u64).unwrap();
    assert_eq!(object.read_block().unwrap(), None);
    assert!(matches!(
        object.seek(long.len() as u64 + 1),
        Err(DiskError::OutOfRange { .. })
    ));
    // Seeking back after the end reads again.
    object.seek(10).unwrap();
    assert_eq!(
        object.read_block().unwrap().unwrap()[..],
        long[10..BLOCK_BYTES]
    );
}

#[test]
fn full_disk_aborts_the_writer_and_the_tier_stays_usable() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", b"before");
    let mut writer = tier.begin(id(2), b"meta").unwrap();
    writer.write(&body(1000, 2)).unwrap();
    tier.store.fail_writes.store(true, Ordering::Relaxed);
    match writer.write(&body(BLOCK_BYTES, 2)) {
        Err(DiskError::Io { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::StorageFull);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert_eq!(tmp_files(&dir), 0);
    assert!(matches!(writer.commit(), Err(DiskError::Aborted)));

    // Failing on the last partial block and the trailer, inside commit.
    let mut writer = tier.begin(id(3), b"meta").unwrap();
    writer.write(b"short").unwrap();
    assert!(matches!(writer.commit(), Err(DiskError::Io { .. })));
    assert_eq!(tmp_files(&dir), 0);

    tier.store.fail_writes.store(false, Ordering::Relaxed);
    assert!(!tier.contains(id(2)) && !tier.contains(id(3)));
    store(&tier, id(2), b"meta", b"after");
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"meta".to_vec(), b"before".to_vec()))
    );
    assert_eq!(
        read_object(&tier, id(2)),
        Some((b"meta".to_vec(), b"after".to_vec()))
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn files_deleted_behind_the_tiers_back_make_objects_absent() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"meta", b"one");
    store(&tier, id(2), b"meta", b"two");
    fs::remove_file(body_path(&dir, id(1))).unwrap();
    fs::remove_file(head_path(&dir, id(2))).unwrap();
    assert!(tier.open_object(id(1)).unwrap().is_none());
    assert!(tier.open_object(id(2)).unwrap().is_none());
    assert!(tier.is_empty());
    assert_index_matches_files(&tier, &dir);
}

// The next two replay races between threads step by step, through the store's internals.

#[test]
fn eviction_racing_a_new_commit_keeps_the_new_version() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"old", b"old body");
    // Eviction takes the old version out of the index...
    let (victim, entry) = tier.store.index.lock().pop_oldest().unwrap();
    // ...a new version is committed before the eviction deletes the files...
    store(&tier, id(1), b"new", b"new body");
    // ...and the deletion leaves the new version's head alone.
    tier.store.unlink_dropped(victim, entry.serial);
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"new".to_vec(), b"new body".to_vec()))
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn meta_update_racing_a_commit_leaves_the_new_version() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    store(&tier, id(1), b"v1", b"body one");
    let old = tier.store.index.lock().get(id(1)).unwrap();
    // An update has written its head for version 1...
    let head_tmp = tier
        .store
        .write_tmp_head(id(1), old.serial, 8, b"revalidated v1")
        .unwrap();
    // ...when version 2 is committed: publishing the stale head must not happen.
    store(&tier, id(1), b"v2", b"body two");
    let published = tier.store.publish(id(1), old, &head_tmp, Some(old.serial));
    assert!(!published.unwrap());
    assert_eq!(
        read_object(&tier, id(1)),
        Some((b"v2".to_vec(), b"body two".to_vec()))
    );
    assert_index_matches_files(&tier, &dir);
}

#[test]
fn second_tier_on_the_same_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    assert!(matches!(
        DiskTier::open(dir.path(), MIB),
        Err(DiskError::Locked { .. })
    ));
    drop(tier);
    open(&dir, MIB);
}

#[test]
fn commit_after_the_tier_closed_stores_nothing() {
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, MIB);
    let mut writer = tier.begin(id(1), b"meta").unwrap();
    writer.write(b"late").unwrap();
    drop(tier);
    let reopened = open(&dir, MIB);
    assert!(matches!(writer.commit(), Err(DiskError::Closed)));
    assert!(!reopened.contains(id(1)) && no_files_of(&dir, id(1)));
    assert_index_matches_files(&reopened, &dir);
}

#[test]
fn tier_writer_and_object_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DiskTier>();
    send_sync::<DiskWriter>();
    send_sync::<DiskObject>();
}

/// Metadata names the body it was written with: version and length.
fn versioned_meta(version: u32, len: usize) -> Vec<u8> {
    let mut meta = version.to_le_bytes().to_vec();
    meta.extend_from_slice(&(len as u32).to_le_bytes());
    meta
}

fn versioned_body(id: ObjectId, version: u32, len: usize) -> Vec<u8> {
    body(len, (id as u8) ^ (version as u8).rotate_left(3))
}

#[test]
fn concurrent_writers_readers_and_removers_never_see_a_mismatched_object() {
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 60;
    let dir = TempDir::new().unwrap();
    let tier = open(&dir, 600_000);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (tier, reads) = (&tier, &reads);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let n = ((round * 7 + thread * 3) % 6) as u8;
                    let version = thread * 1000 + round;
                    let len = ((round as usize * 37_003) % (2 * BLOCK_BYTES + 999)) + 1;
                    match round % 5 {
                        0 | 1 => {
                            let meta = versioned_meta(version, len);
                            let bytes = versioned_body(id(n), version, len);
                            store(tier, id(n), &meta, &bytes);
                        }
                        2 | 3 => {
                            let Some(mut object) = tier.open_object(id(n)).unwrap() else {
                                continue;
                            };
                            let meta = object.meta().to_vec();
                            let version = u32::from_le_bytes(meta[..4].try_into().unwrap());
                            let len = u32::from_le_bytes(meta[4..8].try_into().unwrap());
                            let read = read_rest(&mut object).expect("no corruption");
                            assert!(read == versioned_body(id(n), version, len as usize));
                            // A revalidation: same body, metadata rewritten.
                            tier.update_meta_if(id(n), object.version(), &meta).unwrap();
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tier.remove(id(n)).unwrap(),
                    }
                }
            });
        }
    });
    assert!(reads.load(Ordering::Relaxed) > 0, "readers found objects");
    assert!(tier.used_bytes() <= tier.max_bytes());
    assert_index_matches_files(&tier, &dir);
    let (len, used) = (tier.len(), tier.used_bytes());
    drop(tier);
    let tier = open(&dir, 600_000);
    assert_eq!((tier.len(), tier.used_bytes()), (len, used));
}

//! The headers a rule set's conditions read, taken from the request in one pass over its
//! fields.
//!
//! Looking each named header up in the request's `HeaderMap` costs a hash of the name, a probe
//! and a compare: about 160 instructions, and a site's rules name fifteen headers or more
//! (bench/README.md, "Shield benchmark"). A request carries few fields, most of them ones no
//! rule names; one pass over them, each name matched against the named ones by a hash of four
//! of its bytes and one compare, fills every slot at once and also says which named headers
//! are absent, which lets a rule set skip the conditions that cannot hold then.
//!
//! A header sent several times reads, as everywhere in the language, as its values joined
//! (`field::TextField::read`); the pass only notes that it was repeated, and the value is
//! joined when a condition first reads it, once per request.

use super::field::TextField;
use crate::RequestFacts;
use http::HeaderValue;

/// How many header fields a rule set keeps slots for; conditions on fields past these (more
/// headers than any site writes rules for) read the `HeaderMap` each time.
pub(super) const SLOTS: usize = 32;

/// One bit per slot.
pub(super) type SlotMask = u32;

/// The header fields a rule set reads, each with its slot, and a table from header names to
/// the slots that read them (`http.cookie` and `http.request.headers["cookie"]` read one
/// header with two separators: two slots).
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderSlots {
    fields: Vec<TextField>,
    names: NameTable,
}

impl HeaderSlots {
    /// The slot of a header field, added if new and there is room; `None` for a field that
    /// is not a header, or past [`SLOTS`].
    pub fn slot(&mut self, field: &TextField) -> Option<u8> {
        field.header_name()?;
        if let Some(index) = self.fields.iter().position(|known| known == field) {
            return u8::try_from(index).ok();
        }
        if self.fields.len() == SLOTS {
            return None;
        }
        self.fields.push(field.clone());
        u8::try_from(self.fields.len() - 1).ok()
    }

    /// Builds the name table once every slot is known.
    pub fn finish(&mut self) {
        let mut names: Vec<(Box<[u8]>, SlotMask)> = Vec::new();
        for (slot, field) in self.fields.iter().enumerate() {
            let Some(name) = field.header_name() else {
                continue;
            };
            let bit = 1 << slot;
            match names
                .iter_mut()
                .find(|(known, _)| **known == *name.as_bytes())
            {
                Some((_, mask)) => *mask |= bit,
                None => names.push((name.as_bytes().into(), bit)),
            }
        }
        self.names = NameTable::new(names);
    }

    /// Reads the request's values of every slot into `values`, empty, in one pass over the
    /// request's header fields. (Filled in place: returned, the values would be copied.)
    #[inline]
    pub fn read<'a>(&self, facts: &RequestFacts<'a>, values: &mut HeaderValues<'a>) {
        if self.fields.is_empty() {
            return;
        }
        for (name, value) in facts.headers {
            let mut slots = self.names.slots(name.as_str().as_bytes());
            while slots != 0 {
                let slot = slots.trailing_zeros() as usize;
                slots &= slots - 1;
                match values.first[slot] {
                    None => values.first[slot] = Some(value),
                    Some(_) => values.repeated |= 1 << slot,
                }
                values.present |= 1 << slot;
            }
        }
    }

    /// The field of a slot.
    pub fn field(&self, slot: u8) -> &TextField {
        &self.fields[usize::from(slot)]
    }
}

/// One request's values of a rule set's header slots.
pub(super) struct HeaderValues<'a> {
    /// The first value of each slot's header; `None` when it was not sent.
    first: [Option<&'a HeaderValue>; SLOTS],
    /// Slots whose header was sent.
    pub present: SlotMask,
    /// Slots whose header was sent several times, read joined.
    repeated: SlotMask,
    /// The joined values read so far, by slot. Empty, and so not allocated, unless a header
    /// was sent several times.
    joined: Vec<(u8, Vec<u8>)>,
}

impl HeaderValues<'_> {
    pub fn new() -> Self {
        HeaderValues {
            first: [None; SLOTS],
            present: 0,
            repeated: 0,
            joined: Vec::new(),
        }
    }

    /// Runs `then` on the value of the header field in `slot` (of `slots`).
    #[inline]
    pub fn text<R>(
        &mut self,
        slots: &HeaderSlots,
        slot: u8,
        facts: &RequestFacts<'_>,
        then: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let index = usize::from(slot);
        if self.repeated & (1 << index) == 0 {
            return then(self.first[index].map_or(b"", HeaderValue::as_bytes));
        }
        if let Some((_, value)) = self.joined.iter().find(|(known, _)| *known == slot) {
            return then(value);
        }
        let value = slots.field(slot).read(facts).into_owned();
        self.joined.push((slot, value));
        let (_, value) = &self.joined[self.joined.len() - 1];
        then(value)
    }
}

/// Header names to slots: a name's bucket is a hash of its length and three of its bytes
/// (names are lowercase, in the request as in the rules), and a bucket holds a few names,
/// compared in full. The multiplier is the one, of a few tried, that spreads the rule set's
/// names best, so a bucket mostly holds one name.
#[derive(Debug, Clone, Default)]
struct NameTable {
    multiplier: u32,
    /// 32 less the number of bits of a bucket index.
    shift: u32,
    /// Where each bucket's names start in `names`; one more than the buckets.
    starts: Box<[u16]>,
    names: Box<[(Box<[u8]>, SlotMask)]>,
}

impl NameTable {
    fn new(names: Vec<(Box<[u8]>, SlotMask)>) -> NameTable {
        if names.is_empty() {
            return NameTable::default();
        }
        // At least twice as many buckets as names.
        let bits = (usize::BITS - (2 * names.len() - 1).leading_zeros()).max(1);
        let shift = 32 - bits;
        let bucket_of =
            |multiplier: u32, name: &[u8]| (key(name).wrapping_mul(multiplier) >> shift) as usize;
        let crowding = |multiplier: u32| {
            let mut counts = vec![0usize; 1 << bits];
            for (name, _) in &names {
                counts[bucket_of(multiplier, name)] += 1;
            }
            counts.iter().map(|&n| n * n).sum::<usize>()
        };
        let mut multiplier = 0x9e37_79b1_u32;
        let mut best = (crowding(multiplier), multiplier);
        let mut candidate = multiplier;
        for _ in 0..64 {
            if best.0 == names.len() {
                break;
            }
            // Odd multipliers from a xorshift sequence.
            candidate ^= candidate << 13;
            candidate ^= candidate >> 17;
            candidate ^= candidate << 5;
            best = best.min((crowding(candidate | 1), candidate | 1));
        }
        multiplier = best.1;
        let mut sorted = names;
        sorted.sort_by_key(|(name, _)| bucket_of(multiplier, name));
        let mut starts = vec![0u16; (1 << bits) + 1];
        for (name, _) in &sorted {
            starts[bucket_of(multiplier, name) + 1] += 1;
        }
        for bucket in 1..starts.len() {
            starts[bucket] += starts[bucket - 1];
        }
        NameTable {
            multiplier,
            shift,
            starts: starts.into(),
            names: sorted.into(),
        }
    }

    /// The slots that read the header `name`; none when no rule names it.
    #[inline]
    fn slots(&self, name: &[u8]) -> SlotMask {
        let bucket = (key(name).wrapping_mul(self.multiplier) >> self.shift) as usize;
        let (Some(&start), Some(&end)) = (self.starts.get(bucket), self.starts.get(bucket + 1))
        else {
            return 0;
        };
        self.names[usize::from(start)..usize::from(end)]
            .iter()
            .find(|(known, _)| super::eval::same_bytes(known, name))
            .map_or(0, |&(_, slots)| slots)
    }
}

/// A name's length, first, middle and last bytes in one word: cheap, and header names that
/// agree on all four are rare.
#[inline]
fn key(name: &[u8]) -> u32 {
    match name {
        [] => 0,
        [first, ..] => {
            let last = name[name.len() - 1];
            let middle = name[name.len() / 2];
            (name.len() as u32 & 0xff)
                | u32::from(*first) << 8
                | u32::from(middle) << 16
                | u32::from(last) << 24
        }
    }
}

//! The search structure under an [`IpTable`](super::IpTable): one family's address space cut
//! into sorted, non-overlapping intervals, each carrying the most specific prefix that covers it.
//!
//! Addresses are plain integers here (`u32` for IPv4, `u128` for IPv6) and prefixes are spans
//! `first..=last`; the table above maps them back to networks and values.

/// An address as an unsigned integer of its family's width.
pub(super) trait Address: Copy + Ord + std::fmt::Debug {
    const ZERO: Self;
    /// The next address up; `None` past the top of the family's space.
    fn successor(self) -> Option<Self>;
    /// `self - base`, or 0 below `base`.
    fn distance_above(self, base: Self) -> Self;
    /// How many low bits it takes to write the value.
    fn bit_length(self) -> u32;
    /// `self >> shift` (0 for a shift of the full width or more), capped at `last`.
    fn shifted_capped(self, shift: u32, last: usize) -> usize;
}

macro_rules! impl_address {
    ($($integer:ty),*) => {$(
        impl Address for $integer {
            const ZERO: Self = 0;
            fn successor(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn distance_above(self, base: Self) -> Self {
                self.saturating_sub(base)
            }
            fn bit_length(self) -> u32 {
                <$integer>::BITS - self.leading_zeros()
            }
            #[inline]
            fn shifted_capped(self, shift: u32, last: usize) -> usize {
                let shifted = self.checked_shr(shift).unwrap_or(0);
                usize::try_from(shifted).map_or(last, |value| value.min(last))
            }
        }
    )*};
}
impl_address!(u32, u128);

/// One prefix as the range of addresses it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span<A> {
    pub first: A,
    pub last: A,
}

/// The intervals of one family, in address order. Each runs from its `start` up to the next
/// one's (the last to the top of the space) and carries the payload of the innermost span
/// covering it, or none when no span does.
///
/// The first interval always starts at address 0, so every address falls in exactly one, and
/// neighbouring intervals never come from the same span (they would have been one interval).
#[derive(Debug, Clone)]
pub(super) struct Intervals<A, T> {
    intervals: Vec<Interval<A, T>>,
    buckets: Buckets<A>,
}

/// The payload sits beside the start it belongs to, not in an array of its own: at a million
/// prefixes every array is far bigger than the CPU's caches, and a lookup that found its
/// interval in one array would then wait on a second miss to read the payload from another.
#[derive(Debug, Clone, Copy)]
struct Interval<A, T> {
    start: A,
    payload: Option<T>,
}

impl<A: Address, T> Default for Intervals<A, T> {
    fn default() -> Self {
        let intervals = vec![Interval {
            start: A::ZERO,
            payload: None,
        }];
        Self {
            buckets: Buckets::build(&intervals),
            intervals,
        }
    }
}

impl<A: Address, T: Copy> Intervals<A, T> {
    /// Flattens `spans` into intervals, each carrying `payload(i)` of the innermost span `i`
    /// covering it. `spans` must be in containment order: by `first`, and for the same `first`
    /// the wider span before the narrower; no span twice. Prefixes never partly overlap (two
    /// are either nested or disjoint), so one sweep with a stack of the spans still open finds,
    /// at every boundary, the innermost one that covers it.
    pub fn build(spans: &[Span<A>], payload: impl Fn(usize) -> T) -> Self {
        debug_assert!(
            spans
                .windows(2)
                .all(|pair| in_containment_order(&pair[0], &pair[1]))
        );
        let mut sweep = Sweep {
            intervals: Vec::with_capacity(2 * spans.len() + 1),
        };
        sweep.intervals.push(Interval {
            start: A::ZERO,
            payload: None,
        });
        // Indexes of the spans that cover the sweep's position, innermost on top.
        let mut open: Vec<usize> = Vec::new();

        for (index, span) in spans.iter().enumerate() {
            while let Some(&top) = open.last()
                && spans[top].last < span.first
            {
                open.pop();
                if let Some(after) = spans[top].last.successor() {
                    sweep.enter(after, open.last().copied());
                }
            }
            sweep.enter(span.first, Some(index));
            open.push(index);
        }
        while let Some(top) = open.pop() {
            if let Some(after) = spans[top].last.successor() {
                sweep.enter(after, open.last().copied());
            }
        }

        let intervals: Vec<_> = sweep
            .intervals
            .iter()
            .map(|interval| Interval {
                start: interval.start,
                payload: interval.payload.map(&payload),
            })
            .collect();
        Self {
            buckets: Buckets::build(&intervals),
            intervals,
        }
    }

    /// The payload of the innermost span covering `address`, if any.
    #[inline]
    pub fn find(&self, address: A) -> Option<&T> {
        // The interval holding `address` is the last one starting at or below it: in this
        // bucket, or when none here does, the last of an earlier bucket, at `low - 1`.
        let (mut low, mut high) = self.buckets.intervals_in_bucket_of(address);
        while high - low > SCAN_LEN {
            let middle = low + (high - low) / 2;
            if self.intervals[middle].start <= address {
                low = middle;
            } else {
                high = middle;
            }
        }
        // Counting, rather than a binary search, reads the bucket's cache lines in parallel
        // instead of one after another.
        let at_or_below: usize = self.intervals[low..high]
            .iter()
            .map(|interval| usize::from(interval.start <= address))
            .sum();
        // Never saturates: the first bucket holds the interval at address 0, which no address
        // is below.
        let interval = (low + at_or_below).saturating_sub(1);
        self.intervals[interval].payload.as_ref()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.intervals.capacity() * size_of::<Interval<A, T>>()
            + self.buckets.offsets.capacity() * size_of::<u32>()
    }
}

/// Intervals per bucket the bucket count aims at, on average; powers of two make it four to
/// sixteen. A lookup then reads one to a few cache lines of intervals, fetched together, and
/// the bucket offsets cost at most a byte per interval. In the benchmark at a million prefixes, 2 was
/// no faster and 8 or 16 slower.
const TARGET_BUCKET_LEN: usize = 4;

/// A bucket holding more intervals than this, which happens only where prefixes crowd a few
/// buckets, is first halved by binary search down to this many.
const SCAN_LEN: usize = 16;

/// 2^20 buckets (4 MiB of offsets) is enough for several million intervals; more buys little.
const MAX_BUCKET_BITS: u32 = 20;

/// Narrows a lookup to the few intervals in its bucket, found by the address's top bits, where
/// a binary search over all of them would wait on ~20 cache misses in turn at a million
/// intervals. Buckets split evenly the addresses from the lowest interval start to the
/// highest, not the whole space: real IPv6 prefixes crowd into `2000::/3`, and buckets spread
/// over all of `::/0` would leave most of them empty and a few crowded. Addresses below the
/// range share the first bucket, those above it the last.
#[derive(Debug, Clone)]
struct Buckets<A> {
    /// The lowest interval start after address 0.
    base: A,
    /// Right shift from an address's distance above `base` to its bucket number.
    shift: u32,
    /// `offsets[b]` is how many intervals start in buckets below `b`, so bucket `b`'s are
    /// `intervals[offsets[b]..offsets[b + 1]]`. One more entry than there are buckets.
    offsets: Vec<u32>,
}

impl<A: Address> Buckets<A> {
    fn build<T>(intervals: &[Interval<A, T>]) -> Self {
        assert!(
            u32::try_from(intervals.len()).is_ok(),
            "an IP table holds fewer than 2^32 intervals of one family"
        );
        let base = intervals.get(1).map_or(A::ZERO, |interval| interval.start);
        let highest = intervals.last().map_or(A::ZERO, |interval| interval.start);
        let wanted_bits = (intervals.len() / TARGET_BUCKET_LEN)
            .checked_ilog2()
            .unwrap_or(0)
            .min(MAX_BUCKET_BITS);
        let range_bits = highest.distance_above(base).bit_length();
        let mut buckets = Self {
            base,
            shift: range_bits.saturating_sub(wanted_bits),
            offsets: Vec::new(),
        };
        let bucket_count = 1 + highest
            .distance_above(base)
            .shifted_capped(buckets.shift, usize::MAX);
        buckets.offsets = vec![0; bucket_count + 1];
        // A counting sort: the intervals are sorted and the bucket number never decreases with
        // the address, so each bucket's intervals are contiguous and the running count is where
        // they begin.
        for interval in intervals {
            let bucket = buckets.bucket_of(interval.start);
            buckets.offsets[bucket + 1] += 1;
        }
        for b in 1..buckets.offsets.len() {
            buckets.offsets[b] += buckets.offsets[b - 1];
        }
        buckets
    }

    #[inline]
    fn bucket_of(&self, address: A) -> usize {
        let last = self.offsets.len() - 2;
        address
            .distance_above(self.base)
            .shifted_capped(self.shift, last)
    }

    /// The range of interval indexes in `address`'s bucket.
    #[inline]
    fn intervals_in_bucket_of(&self, address: A) -> (usize, usize) {
        let bucket = self.bucket_of(address);
        (
            self.offsets[bucket] as usize,
            self.offsets[bucket + 1] as usize,
        )
    }
}

fn in_containment_order<A: Address>(earlier: &Span<A>, later: &Span<A>) -> bool {
    earlier.first < later.first || (earlier.first == later.first && earlier.last > later.last)
}

/// The intervals as the build sweep lays them down, each with the index of its span.
struct Sweep<A> {
    intervals: Vec<Interval<A, usize>>,
}

impl<A: Address> Sweep<A> {
    /// From `start` on, addresses belong to span `owner`. Boundaries arrive in non-decreasing
    /// order; several at one address (a prefix closing where the next opens, nested prefixes
    /// sharing a first address) leave only the last, which says where the sweep ends up.
    fn enter(&mut self, start: A, owner: Option<usize>) {
        let intervals = &mut self.intervals;
        let last = intervals.len() - 1; // never empty: it starts with address 0
        if intervals[last].start == start {
            intervals[last].payload = owner;
            if last > 0 && intervals[last - 1].payload == owner {
                intervals.pop();
            }
        } else if intervals[last].payload != owner {
            intervals.push(Interval {
                start,
                payload: owner,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: u32, last: u32) -> Span<u32> {
        Span { first, last }
    }

    /// Intervals whose payload is the index of the span they came from.
    fn indexed<A: Address>(spans: &[Span<A>]) -> Intervals<A, usize> {
        Intervals::build(spans, |index| index)
    }

    fn starts<A: Address, T>(intervals: &Intervals<A, T>) -> Vec<A> {
        intervals
            .intervals
            .iter()
            .map(|interval| interval.start)
            .collect()
    }

    fn owners(intervals: &Intervals<u32, usize>, addresses: &[u32]) -> Vec<Option<usize>> {
        addresses
            .iter()
            .map(|&a| intervals.find(a).copied())
            .collect()
    }

    #[test]
    fn empty_table_covers_nothing() {
        let intervals = indexed::<u32>(&[]);
        assert_eq!(owners(&intervals, &[0, 1, u32::MAX]), [None, None, None]);
        assert_eq!(starts(&intervals), [0]);
    }

    #[test]
    fn nested_spans_cut_the_outer_one_around_the_inner() {
        let intervals = indexed(&[span(0, 99), span(10, 19)]);
        assert_eq!(
            owners(&intervals, &[0, 9, 10, 19, 20, 99, 100]),
            [Some(0), Some(0), Some(1), Some(1), Some(0), Some(0), None]
        );
        assert_eq!(starts(&intervals), [0, 10, 20, 100]);
    }

    #[test]
    fn spans_sharing_an_end_close_together() {
        let intervals = indexed(&[span(0, 99), span(50, 99), span(90, 99)]);
        assert_eq!(
            owners(&intervals, &[49, 50, 89, 90, 99, 100]),
            [Some(0), Some(1), Some(1), Some(2), Some(2), None]
        );
        assert_eq!(starts(&intervals), [0, 50, 90, 100]);
    }

    #[test]
    fn adjacent_spans_meet_without_a_gap() {
        let intervals = indexed(&[span(10, 19), span(20, 29)]);
        assert_eq!(
            owners(&intervals, &[9, 10, 19, 20, 29, 30]),
            [None, Some(0), Some(0), Some(1), Some(1), None]
        );
        assert_eq!(starts(&intervals), [0, 10, 20, 30]);
    }

    #[test]
    fn a_span_reaching_the_top_of_the_space_leaves_no_interval_past_it() {
        let intervals = indexed(&[span(0, u32::MAX), span(u32::MAX - 1, u32::MAX)]);
        assert_eq!(
            owners(&intervals, &[0, u32::MAX - 2, u32::MAX - 1, u32::MAX]),
            [Some(0), Some(0), Some(1), Some(1)]
        );
        assert_eq!(starts(&intervals), [0, u32::MAX - 1]);
    }

    #[test]
    fn buckets_find_intervals_that_start_in_an_earlier_bucket() {
        // Enough spans for many buckets, with long stretches of buckets where no interval
        // starts: a lookup there must fall back to the interval open from before.
        let spans: Vec<_> = (0..1000u32)
            .map(|i| span(i << 22, (i << 22) + (1 << 21)))
            .collect();
        let intervals = indexed(&spans);
        assert!(
            intervals.buckets.offsets.len() > 3,
            "the test needs several buckets"
        );
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(intervals.find(s.first).copied(), Some(i));
            assert_eq!(intervals.find(s.last).copied(), Some(i));
            assert_eq!(intervals.find(s.last + 1).copied(), None);
        }
    }

    #[test]
    fn addresses_outside_the_bucketed_range_fall_in_the_end_buckets() {
        // Prefixes crowded into a narrow, high range, as IPv6 lists crowd into 2000::/3.
        let base = 0x2a00_u128 << 112;
        let spans: Vec<_> = (0..500u128)
            .map(|i| Span {
                first: base + (i << 80),
                last: base + (i << 80) + (1 << 79),
            })
            .chain([Span {
                first: u128::MAX - 1,
                last: u128::MAX - 1,
            }])
            .collect();
        let intervals = indexed(&spans);
        assert!(
            intervals.buckets.offsets.len() > 3,
            "the test needs several buckets"
        );
        assert_eq!(intervals.find(0).copied(), None);
        assert_eq!(intervals.find(base - 1).copied(), None);
        assert_eq!(intervals.find(base).copied(), Some(0));
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(intervals.find(s.first).copied(), Some(i));
            assert_eq!(intervals.find(s.last).copied(), Some(i));
            assert_eq!(intervals.find(s.last + 1).copied(), None);
        }
        assert_eq!(intervals.find(u128::MAX - 2).copied(), None);
    }

    #[test]
    fn works_for_128_bit_addresses() {
        let spans = [
            Span {
                first: 0u128,
                last: u128::MAX,
            },
            Span {
                first: 1 << 100,
                last: (1 << 101) - 1,
            },
        ];
        let intervals = indexed(&spans);
        assert_eq!(intervals.find(0).copied(), Some(0));
        assert_eq!(intervals.find(1 << 100).copied(), Some(1));
        assert_eq!(intervals.find(1 << 101).copied(), Some(0));
        assert_eq!(intervals.find(u128::MAX).copied(), Some(0));
    }
}

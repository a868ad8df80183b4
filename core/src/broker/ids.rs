//! Ids the broker hands out.
//!
//! Message ids: a random 64-bit prefix per broker and a counter, `"{prefix:016x}-{counter:016x}"`.
//! Unique across brokers and processes without coordination, and they sort in publish order
//! within one broker.
//!
//! Delivery ids: a store names each delivery by a key that is unique only within that store
//! (a counter from 1 in memory, a row key in SQLite, a topic index and sequence on Redis), so
//! two brokers of one process hand out the same numbers. A delivery id is the key with this
//! broker's tag in bits 48..63: an id that one broker issued is never a live id of another
//! broker of the process, and `ack` on the wrong broker says `UnknownDelivery` instead of
//! settling whichever delivery has that number. Tags are taken round-robin from 1..=32767
//! (the top bit stays clear, so ids fit a signed 64-bit integer), skipping those in use, so a
//! tag comes back only after thousands of other brokers were made.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Length of a generated id.
pub const GENERATED_ID_LEN: usize = 33;

pub(crate) struct IdGenerator {
    /// The random prefix in hex and the dash, formatted once.
    prefix_text: [u8; 17],
    next: AtomicU64,
}

impl IdGenerator {
    pub(crate) fn new() -> Self {
        // RandomState is seeded from the OS; mix in time and pid for good measure.
        let mut h = RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.write_u32(std::process::id());
        let prefix = h.finish();
        let mut prefix_text = [b'-'; 17];
        write_hex(&mut prefix_text[..16], prefix);
        IdGenerator { prefix_text, next: AtomicU64::new(1) }
    }

    /// Writes the next id into `buf` without allocating and returns it.
    pub(crate) fn next<'a>(&self, buf: &'a mut [u8; GENERATED_ID_LEN]) -> &'a str {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        buf[..17].copy_from_slice(&self.prefix_text);
        write_hex(&mut buf[17..], n);
        std::str::from_utf8(buf).expect("hex is ASCII")
    }
}

/// Where a broker's tag starts in a delivery id; keys below `1 << TAG_SHIFT` are guaranteed
/// apart from every other broker's ids (larger keys still round-trip: the tag is XORed in).
const TAG_SHIFT: u32 = 48;
const MAX_TAG: u16 = 0x7fff;

/// Tags in use by live brokers of this process, and the last one given out.
static TAGS: Mutex<(BTreeSet<u16>, u16)> = Mutex::new((BTreeSet::new(), 0));

/// This broker's delivery id space: turns store keys into delivery ids and back.
pub(crate) struct DeliveryIds {
    tag: u16,
    mask: u64,
}

impl DeliveryIds {
    /// Takes the next free tag. With all 32767 in use (that many live brokers), tags are
    /// shared and ids of two brokers may meet again, as before tags existed.
    pub(crate) fn new() -> Self {
        let mut tags = TAGS.lock().unwrap_or_else(|p| p.into_inner());
        let (in_use, last) = &mut *tags;
        let mut tag = *last;
        for _ in 0..MAX_TAG {
            tag = if tag >= MAX_TAG { 1 } else { tag + 1 };
            if !in_use.contains(&tag) {
                break;
            }
        }
        in_use.insert(tag);
        *last = tag;
        DeliveryIds { tag, mask: u64::from(tag) << TAG_SHIFT }
    }

    /// The delivery id of store key `key`.
    pub(crate) fn of_key(&self, key: u64) -> u64 {
        key ^ self.mask
    }

    /// The store key behind delivery id `id`, as this broker would have issued it.
    pub(crate) fn key_of(&self, id: u64) -> u64 {
        id ^ self.mask
    }
}

impl Drop for DeliveryIds {
    fn drop(&mut self) {
        TAGS.lock().unwrap_or_else(|p| p.into_inner()).0.remove(&self.tag);
    }
}

fn write_hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_ordered() {
        let g = IdGenerator::new();
        let (mut a, mut b) = ([0; GENERATED_ID_LEN], [0; GENERATED_ID_LEN]);
        let first = g.next(&mut a).to_owned();
        let second = g.next(&mut b).to_owned();
        assert_ne!(first, second);
        assert!(first < second);
        assert_eq!(first.len(), GENERATED_ID_LEN);
        crate::names::validate_id(&first).unwrap();
        assert_ne!(IdGenerator::new().prefix_text, g.prefix_text);
    }

    #[test]
    fn delivery_ids_of_live_brokers_never_meet() {
        let (a, b) = (DeliveryIds::new(), DeliveryIds::new());
        assert_ne!(a.tag, b.tag);
        for key in [1, 2, 4096, (1 << 40) | 7, (1 << TAG_SHIFT) - 1] {
            assert_eq!(a.key_of(a.of_key(key)), key);
            // B reads A's id as a key no store of B issues (keys stay below 2^48).
            assert!(b.key_of(a.of_key(key)) >= 1 << TAG_SHIFT);
            assert!(a.of_key(key) < 1 << 63, "fits a signed 64-bit integer");
        }
        let a_tag = a.tag;
        drop(a);
        let c = DeliveryIds::new();
        assert_ne!(c.tag, a_tag, "a released tag is not the next one given out");
    }
}

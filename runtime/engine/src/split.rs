//! Stable random splits: the same contact always lands on the same way of the
//! same split, with no randomness source, so a replayed input decides alike.

use sha2::{Digest, Sha256};

use crate::journey::SplitWay;

/// The contact's bucket for a split, 0 to 99: a hash of the contact, the journey
/// and the step, so that two splits in one journey are independent of each other.
pub fn bucket(contact_id: &str, journey_id: &str, step_id: &str) -> u32 {
    let mut hasher = Sha256::new();
    // A separator that ids do not contain keeps ("a", "bc") and ("ab", "c") apart.
    for part in [contact_id, journey_id, step_id] {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 2^64 is not a multiple of 100, but the bias (under 1e-17) is no concern here.
    u32::try_from(u64::from_be_bytes(first) % 100).unwrap_or(0)
}

/// The index of the way a bucket falls in: ways take consecutive ranges of
/// buckets in the order written, each as wide as its percent.
pub fn way_for(bucket: u32, ways: &[SplitWay]) -> Option<usize> {
    let mut upper = 0u32;
    for (index, way) in ways.iter().enumerate() {
        upper = upper.saturating_add(way.percent);
        if bucket < upper {
            return Some(index);
        }
    }
    // Percents are checked to add up to 100 on load; if not, the rest go last.
    ways.len().checked_sub(1)
}

//! Random bytes for identifiers that must differ but guard nothing: AMI ActionIDs, SIP tags and
//! branches, the hub's epoch, retry jitter. The operating system's randomness, or the clock and
//! a counter when it cannot be read (so an id is never all zeros twice). Session tokens and
//! password salts do not come from here: they fail instead (`store::users`).
//!
//! The one place `domain` asks the operating system for anything.

use std::sync::atomic::{AtomicU64, Ordering};

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::getrandom(&mut b).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 64;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    b
}

/// Lowercase hex of `n` random bytes (`2n` digits).
pub fn hex(n: usize) -> String {
    let mut out = String::with_capacity(2 * n);
    let mut left = n;
    while left > 0 {
        let chunk = bytes::<16>();
        for b in &chunk[..left.min(16)] {
            out.push_str(&format!("{b:02x}"));
        }
        left = left.saturating_sub(16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_has_two_digits_a_byte_and_differs_each_time() {
        for n in [1, 8, 16, 17, 40] {
            let a = hex(n);
            assert_eq!(a.len(), 2 * n);
            assert!(a
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        }
        assert_ne!(hex(8), hex(8));
        assert_ne!(bytes::<8>(), bytes::<8>());
    }
}

//! A fast hasher for the maps looked up per event, keyed by kernel ids (pids, cgroup ids)
//! or static names. std's SipHash protects against keys chosen to collide; these keys are
//! handed out by the kernel, and SipHash cost ~1000 instructions per event (callgrind).

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

/// FxHash's mixing step (rustc's hasher): a rotate, an xor and a multiply per word.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by kernel ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A set of kernel ids.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_with_close_ids() {
        let mut m: IdMap<u32, u32> = IdMap::default();
        for pid in 1..=100_000 {
            m.insert(pid, pid * 2);
        }
        assert_eq!(m.len(), 100_000);
        assert!((1..=100_000).all(|p| m[&p] == p * 2));
        let mut s: IdMap<&str, u8> = IdMap::default();
        s.insert("exec", 1);
        s.insert("exit", 2);
        assert_eq!((s["exec"], s["exit"]), (1, 2));
    }
}

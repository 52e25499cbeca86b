//! md5 of short strings, many at a time.
//!
//! The drill fixes the hash, so routing costs one md5 per key, and one md5 is a chain of
//! 64 dependent steps: one key at a time leaves most of the CPU idle. A string of at most
//! [`ONE_BLOCK`] bytes is a single padded md5 block, so eight of them can go through the
//! steps side by side, one lane each: LLVM turns the lanes into vector instructions
//! (8 × 32 bits in an AVX2 register where the CPU has it, checked at run time; two SSE2
//! registers otherwise). Longer strings go through the `md-5` crate, one at a time. Both
//! give exactly the `md-5` crate's digest (tested against it).

use md5::{Digest, Md5};

/// The longest string that fits one md5 block with its padding and length.
pub(crate) const ONE_BLOCK: usize = 55;

/// Strings hashed side by side.
pub(crate) const LANES: usize = 8;

/// md5's state words `(a, b, c, d)`; the digest is their little-endian bytes in order.
pub(crate) type Words = [u32; 4];

const INIT: Words = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// The 16-byte digest of `s`.
#[inline]
pub(crate) fn digest(s: &[u8]) -> [u8; 16] {
    if s.len() > ONE_BLOCK {
        return Md5::digest(s).into();
    }
    let block = padded_block(s);
    let m: [[u32; 1]; 16] = std::array::from_fn(|w| [block[w]]);
    let out = compress::<1>(&m);
    to_bytes([out[0][0], out[1][0], out[2][0], out[3][0]])
}

/// The digest of every string, in order, appended to `out`.
pub(crate) fn digests<S: AsRef<[u8]>>(strings: &[S], out: &mut Vec<[u8; 16]>) {
    out.reserve(strings.len());
    for chunk in strings.chunks(LANES) {
        let mut m = [[0u32; LANES]; 16];
        for (lane, s) in chunk.iter().map(AsRef::as_ref).enumerate() {
            // A long string's lane hashes an empty block; its digest comes from `digest`.
            let block = padded_block(if s.len() > ONE_BLOCK { b"" } else { s });
            for (word, lanes) in block.iter().zip(m.iter_mut()) {
                lanes[lane] = *word;
            }
        }
        let words = compress8(&m);
        out.extend(
            chunk
                .iter()
                .map(AsRef::as_ref)
                .enumerate()
                .map(|(lane, s)| {
                    if s.len() > ONE_BLOCK {
                        digest(s)
                    } else {
                        to_bytes([
                            words[0][lane],
                            words[1][lane],
                            words[2][lane],
                            words[3][lane],
                        ])
                    }
                }),
        );
    }
}

/// `s` (at most [`ONE_BLOCK`] bytes) padded as md5's only block, as 16 little-endian words.
#[inline(always)]
fn padded_block(s: &[u8]) -> [u32; 16] {
    debug_assert!(s.len() <= ONE_BLOCK);
    let mut bytes = [0u8; 64];
    bytes[..s.len()].copy_from_slice(s);
    bytes[s.len()] = 0x80;
    bytes[56..].copy_from_slice(&(s.len() as u64 * 8).to_le_bytes());
    std::array::from_fn(|w| {
        u32::from_le_bytes([
            bytes[4 * w],
            bytes[4 * w + 1],
            bytes[4 * w + 2],
            bytes[4 * w + 3],
        ])
    })
}

fn to_bytes(words: Words) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

fn compress8(m: &[[u32; LANES]; 16]) -> [[u32; LANES]; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above; that is all `compress8_avx2` needs.
        return unsafe { compress8_avx2(m) };
    }
    compress::<LANES>(m)
}

/// [`compress`] compiled for AVX2, where eight lanes fill one register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress8_avx2(m: &[[u32; LANES]; 16]) -> [[u32; LANES]; 4] {
    compress::<LANES>(m)
}

/// One md5 step on every lane: `a = b + rotl(a + f(b, c, d) + m + k, s)`.
macro_rules! step {
    ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        for l in 0..N {
            let x = $f($b[l], $c[l], $d[l])
                .wrapping_add($a[l])
                .wrapping_add($k)
                .wrapping_add($m[l]);
            $a[l] = $b[l].wrapping_add(x.rotate_left($s));
        }
    };
}

#[inline(always)]
fn f(b: u32, c: u32, d: u32) -> u32 {
    (b & c) | (!b & d)
}

#[inline(always)]
fn g(b: u32, c: u32, d: u32) -> u32 {
    (b & d) | (c & !d)
}

#[inline(always)]
fn h(b: u32, c: u32, d: u32) -> u32 {
    b ^ c ^ d
}

#[inline(always)]
fn i(b: u32, c: u32, d: u32) -> u32 {
    c ^ (b | !d)
}

/// md5's compression of one block per lane, from the initial state (RFC 1321 §3.4,
/// unrolled so every message index, constant and shift is known at compile time).
#[inline(always)]
fn compress<const N: usize>(m: &[[u32; N]; 16]) -> [[u32; N]; 4] {
    let [mut a, mut b, mut c, mut d] = INIT.map(|w| [w; N]);
    step!(f, a, b, c, d, m[0], 0xd76aa478, 7);
    step!(f, d, a, b, c, m[1], 0xe8c7b756, 12);
    step!(f, c, d, a, b, m[2], 0x242070db, 17);
    step!(f, b, c, d, a, m[3], 0xc1bdceee, 22);
    step!(f, a, b, c, d, m[4], 0xf57c0faf, 7);
    step!(f, d, a, b, c, m[5], 0x4787c62a, 12);
    step!(f, c, d, a, b, m[6], 0xa8304613, 17);
    step!(f, b, c, d, a, m[7], 0xfd469501, 22);
    step!(f, a, b, c, d, m[8], 0x698098d8, 7);
    step!(f, d, a, b, c, m[9], 0x8b44f7af, 12);
    step!(f, c, d, a, b, m[10], 0xffff5bb1, 17);
    step!(f, b, c, d, a, m[11], 0x895cd7be, 22);
    step!(f, a, b, c, d, m[12], 0x6b901122, 7);
    step!(f, d, a, b, c, m[13], 0xfd987193, 12);
    step!(f, c, d, a, b, m[14], 0xa679438e, 17);
    step!(f, b, c, d, a, m[15], 0x49b40821, 22);
    step!(g, a, b, c, d, m[1], 0xf61e2562, 5);
    step!(g, d, a, b, c, m[6], 0xc040b340, 9);
    step!(g, c, d, a, b, m[11], 0x265e5a51, 14);
    step!(g, b, c, d, a, m[0], 0xe9b6c7aa, 20);
    step!(g, a, b, c, d, m[5], 0xd62f105d, 5);
    step!(g, d, a, b, c, m[10], 0x02441453, 9);
    step!(g, c, d, a, b, m[15], 0xd8a1e681, 14);
    step!(g, b, c, d, a, m[4], 0xe7d3fbc8, 20);
    step!(g, a, b, c, d, m[9], 0x21e1cde6, 5);
    step!(g, d, a, b, c, m[14], 0xc33707d6, 9);
    step!(g, c, d, a, b, m[3], 0xf4d50d87, 14);
    step!(g, b, c, d, a, m[8], 0x455a14ed, 20);
    step!(g, a, b, c, d, m[13], 0xa9e3e905, 5);
    step!(g, d, a, b, c, m[2], 0xfcefa3f8, 9);
    step!(g, c, d, a, b, m[7], 0x676f02d9, 14);
    step!(g, b, c, d, a, m[12], 0x8d2a4c8a, 20);
    step!(h, a, b, c, d, m[5], 0xfffa3942, 4);
    step!(h, d, a, b, c, m[8], 0x8771f681, 11);
    step!(h, c, d, a, b, m[11], 0x6d9d6122, 16);
    step!(h, b, c, d, a, m[14], 0xfde5380c, 23);
    step!(h, a, b, c, d, m[1], 0xa4beea44, 4);
    step!(h, d, a, b, c, m[4], 0x4bdecfa9, 11);
    step!(h, c, d, a, b, m[7], 0xf6bb4b60, 16);
    step!(h, b, c, d, a, m[10], 0xbebfbc70, 23);
    step!(h, a, b, c, d, m[13], 0x289b7ec6, 4);
    step!(h, d, a, b, c, m[0], 0xeaa127fa, 11);
    step!(h, c, d, a, b, m[3], 0xd4ef3085, 16);
    step!(h, b, c, d, a, m[6], 0x04881d05, 23);
    step!(h, a, b, c, d, m[9], 0xd9d4d039, 4);
    step!(h, d, a, b, c, m[12], 0xe6db99e5, 11);
    step!(h, c, d, a, b, m[15], 0x1fa27cf8, 16);
    step!(h, b, c, d, a, m[2], 0xc4ac5665, 23);
    step!(i, a, b, c, d, m[0], 0xf4292244, 6);
    step!(i, d, a, b, c, m[7], 0x432aff97, 10);
    step!(i, c, d, a, b, m[14], 0xab9423a7, 15);
    step!(i, b, c, d, a, m[5], 0xfc93a039, 21);
    step!(i, a, b, c, d, m[12], 0x655b59c3, 6);
    step!(i, d, a, b, c, m[3], 0x8f0ccc92, 10);
    step!(i, c, d, a, b, m[10], 0xffeff47d, 15);
    step!(i, b, c, d, a, m[1], 0x85845dd1, 21);
    step!(i, a, b, c, d, m[8], 0x6fa87e4f, 6);
    step!(i, d, a, b, c, m[15], 0xfe2ce6e0, 10);
    step!(i, c, d, a, b, m[6], 0xa3014314, 15);
    step!(i, b, c, d, a, m[13], 0x4e0811a1, 21);
    step!(i, a, b, c, d, m[4], 0xf7537e82, 6);
    step!(i, d, a, b, c, m[11], 0xbd3af235, 10);
    step!(i, c, d, a, b, m[2], 0x2ad7d2bb, 15);
    step!(i, b, c, d, a, m[9], 0xeb86d391, 21);
    for l in 0..N {
        a[l] = a[l].wrapping_add(INIT[0]);
        b[l] = b[l].wrapping_add(INIT[1]);
        c[l] = c[l].wrapping_add(INIT[2]);
        d[l] = d[l].wrapping_add(INIT[3]);
    }
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings of every length around the one-block limit, with every byte value.
    fn strings(count: usize) -> Vec<Vec<u8>> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|n| {
                let len = if n < 130 { n } else { (next() % 130) as usize };
                (0..len).map(|_| next() as u8).collect()
            })
            .collect()
    }

    #[test]
    fn one_digest_equals_the_md5_crate() {
        for s in strings(2000) {
            let want: [u8; 16] = Md5::digest(&s).into();
            assert_eq!(digest(&s), want, "length {}", s.len());
        }
    }

    #[test]
    fn many_digests_equal_the_md5_crate_whatever_the_batch_size() {
        let all = strings(3000);
        let mut start = 0;
        for size in (0..40).cycle() {
            if start >= all.len() {
                break;
            }
            let batch: Vec<&[u8]> = all[start..(start + size).min(all.len())]
                .iter()
                .map(Vec::as_slice)
                .collect();
            let mut out = vec![[0xAA; 16]];
            digests(&batch, &mut out);
            assert_eq!(out.len(), 1 + batch.len(), "appends one digest per string");
            for (s, got) in batch.iter().zip(&out[1..]) {
                let want: [u8; 16] = Md5::digest(s).into();
                assert_eq!(*got, want, "length {}", s.len());
            }
            start += size;
        }
    }

    #[test]
    fn the_portable_lanes_equal_the_dispatched_ones() {
        let all = strings(64);
        for chunk in all.chunks(LANES) {
            let mut m = [[0u32; LANES]; 16];
            for (lane, s) in chunk.iter().enumerate() {
                let s = if s.len() > ONE_BLOCK {
                    &[][..]
                } else {
                    s.as_slice()
                };
                for (w, word) in padded_block(s).into_iter().enumerate() {
                    m[w][lane] = word;
                }
            }
            assert_eq!(compress::<LANES>(&m), compress8(&m));
        }
    }
}

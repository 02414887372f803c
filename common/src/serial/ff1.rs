//! FF1 (NIST SP 800-38G) over decimal strings of 6 to 19 digits, with AES-128: a keyed
//! permutation of `[0, 10^n)` for each length `n`, the random order of a model's serials.
//!
//! Numbers of up to 19 digits fit a `u64`, so every step is `u128` arithmetic instead
//! of the standard's arbitrary-precision numerals. With no tweak, the first CBC-MAC block (`P`)
//! depends only on the length, so its encryption is computed once per length: a round then
//! costs one AES block.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

const ROUNDS: u8 = 10;
/// The standard's minimum domain (radix^minlen >= 1,000,000): six decimal digits.
pub const MIN_DIGITS: u8 = 6;
/// Every number of up to 19 digits is a `u64`; 20 digits are not.
pub const MAX_DIGITS: u8 = 19;

/// FF1-AES128 with radix 10, for lengths `MIN_DIGITS..=MAX_DIGITS` (any from 2 computes, the
/// standard allows from 6).
#[derive(Clone)]
pub struct Ff1 {
    aes: Aes128,
}

impl std::fmt::Debug for Ff1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ff1(..)")
    }
}

/// The per-length constants of one FF1 computation.
#[derive(Debug, Clone)]
struct Shape {
    n: u32,
    u: u32,
    v: u32,
    /// Bytes of `NUM(B)` in `Q`.
    b: usize,
    /// Bytes of `S` used for `y` (at most 16 here).
    d: usize,
}

impl Shape {
    fn new(n: u32) -> Shape {
        let u = n / 2;
        let v = n - u;
        // ceil(v * log2(10)) bits: the bit length of 10^v, which is never a power of two.
        let bits = 128 - 10u128.pow(v).leading_zeros();
        let b = bits.div_ceil(8) as usize;
        let d = 4 * b.div_ceil(4) + 4;
        Shape { n, u, v, b, d }
    }
}

impl Ff1 {
    pub fn new(key: &[u8; 16]) -> Ff1 {
        Ff1 {
            aes: Aes128::new(key.into()),
        }
    }

    fn encrypt_block(&self, block: &mut [u8; 16]) {
        self.aes.encrypt_block(block.into());
    }

    /// `P` of the standard, encrypted: the first block of every round's CBC-MAC.
    fn p_block(&self, s: &Shape, tweak_len: usize) -> [u8; 16] {
        let mut p = [1, 2, 1, 0, 0, 10, 10, s.u as u8, 0, 0, 0, 0, 0, 0, 0, 0];
        p[8..12].copy_from_slice(&s.n.to_be_bytes());
        p[12..16].copy_from_slice(&(tweak_len as u32).to_be_bytes());
        self.encrypt_block(&mut p);
        p
    }

    /// `y = NUM_2(S)` for round `i` with the numeral `x` of the half that feeds it.
    fn round_value(&self, s: &Shape, p: &[u8; 16], tweak: &[u8], i: u8, x: u128) -> u128 {
        // Q = T || 0^((-t-b-1) mod 16) || [i] || [x]^b, then the CBC-MAC of P || Q.
        let pad = (16 - (tweak.len() + s.b + 1) % 16) % 16;
        let q_len = tweak.len() + pad + 1 + s.b;
        let mut q = [0u8; 64];
        q[..tweak.len()].copy_from_slice(tweak);
        q[tweak.len() + pad] = i;
        q[q_len - s.b..q_len].copy_from_slice(&x.to_be_bytes()[16 - s.b..]);
        let mut r = *p;
        for chunk in q[..q_len].chunks(16) {
            for (a, b) in r.iter_mut().zip(chunk) {
                *a ^= b;
            }
            self.encrypt_block(&mut r);
        }
        // S is the first d bytes of R (d <= 16 for up to 20 digits).
        let mut y = [0u8; 16];
        y[16 - s.d..].copy_from_slice(&r[..s.d]);
        u128::from_be_bytes(y)
    }

    /// The image of `x` (`n` digits, zero-padded) with `tweak` (at most 32 bytes): the
    /// standard's general form, for its test vectors.
    #[cfg(test)]
    pub fn encrypt_with(&self, n: u8, tweak: &[u8], x: u64) -> u64 {
        let s = Shape::new(u32::from(n));
        self.encrypt(&s, &self.p_block(&s, tweak.len()), tweak, x)
    }

    /// The preimage of `x`: `decrypt_with(n, t, encrypt_with(n, t, x)) == x`.
    #[cfg(test)]
    pub fn decrypt_with(&self, n: u8, tweak: &[u8], x: u64) -> u64 {
        let s = Shape::new(u32::from(n));
        self.decrypt(&s, &self.p_block(&s, tweak.len()), tweak, x)
    }

    fn encrypt(&self, s: &Shape, p: &[u8; 16], tweak: &[u8], x: u64) -> u64 {
        let (mu, mv) = (10u128.pow(s.u), 10u128.pow(s.v));
        let (mut a, mut b) = (u128::from(x) / mv, u128::from(x) % mv);
        for i in 0..ROUNDS {
            let m = if i % 2 == 0 { mu } else { mv };
            let y = self.round_value(s, p, tweak, i, b);
            let c = (a + y % m) % m;
            a = b;
            b = c;
        }
        // After an even number of rounds A has u digits and B has v: below 10^n, a u64.
        (a * mv + b) as u64
    }

    fn decrypt(&self, s: &Shape, p: &[u8; 16], tweak: &[u8], x: u64) -> u64 {
        let (mu, mv) = (10u128.pow(s.u), 10u128.pow(s.v));
        let (mut a, mut b) = (u128::from(x) / mv, u128::from(x) % mv);
        for i in (0..ROUNDS).rev() {
            let m = if i % 2 == 0 { mu } else { mv };
            let y = self.round_value(s, p, tweak, i, a);
            let c = (b + m - y % m) % m;
            b = a;
            a = c;
        }
        (a * mv + b) as u64
    }
}

/// [`Ff1`] for one length and no tweak, with `P` encrypted once: what a model's serials use.
#[derive(Debug, Clone)]
pub struct Permutation {
    ff1: Ff1,
    shape: Shape,
    p: [u8; 16],
}

impl Permutation {
    /// A permutation of `[0, 10^digits)`; `digits` in `MIN_DIGITS..=MAX_DIGITS`.
    pub fn new(key: &[u8; 16], digits: u8) -> Permutation {
        let ff1 = Ff1::new(key);
        let shape = Shape::new(u32::from(digits));
        let p = ff1.p_block(&shape, 0);
        Permutation { ff1, shape, p }
    }

    pub fn apply(&self, x: u64) -> u64 {
        self.ff1.encrypt(&self.shape, &self.p, &[], x)
    }

    pub fn invert(&self, x: u64) -> u64 {
        self.ff1.decrypt(&self.shape, &self.p, &[], x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [
        0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6, 0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F,
        0x3C,
    ];

    #[test]
    fn nist_sp800_38g_samples() {
        // FF1-AES128, radix 10, samples 1 and 2 of NIST's FF1 examples.
        let ff1 = Ff1::new(&KEY);
        assert_eq!(ff1.encrypt_with(10, &[], 123_456_789), 2_433_477_484);
        assert_eq!(ff1.decrypt_with(10, &[], 2_433_477_484), 123_456_789);
        let tweak = [0x39, 0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, 0x30];
        assert_eq!(ff1.encrypt_with(10, &tweak, 123_456_789), 6_124_200_773);
        assert_eq!(ff1.decrypt_with(10, &tweak, 6_124_200_773), 123_456_789);
    }

    #[test]
    fn a_permutation_is_bijective_on_six_digits() {
        let p = Permutation::new(&KEY, 6);
        let mut seen = vec![false; 1_000_000];
        for x in 0..1_000_000 {
            let y = p.apply(x);
            assert!(y < 1_000_000);
            assert!(!std::mem::replace(&mut seen[y as usize], true), "{y} twice");
            assert_eq!(p.invert(y), x);
        }
    }

    #[test]
    fn every_length_inverts_and_the_fixed_block_matches_the_general_path() {
        let ff1 = Ff1::new(&KEY);
        for digits in MIN_DIGITS..=MAX_DIGITS {
            let p = Permutation::new(&KEY, digits);
            let top = 10u64.pow(u32::from(digits)) - 1;
            for x in [0, 1, 2, 12_345, top / 3, top - 1, top] {
                let y = p.apply(x);
                assert!(
                    u128::from(y) < 10u128.pow(u32::from(digits)),
                    "{digits}: {y}"
                );
                assert_eq!(y, ff1.encrypt_with(digits, &[], x), "{digits}: {x}");
                assert_eq!(p.invert(y), x, "{digits}: {x}");
            }
        }
    }
}

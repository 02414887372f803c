//! FF1 (NIST SP 800-38G) over decimal strings of 6 to 19 digits, with AES-128: a keyed
//! permutation of `[0, 10^n)` for each length `n`, the random order of a model's serials.
//!
//! Numbers of up to 19 digits fit a `u64`, so the general path is `u128` arithmetic instead
//! of the standard's arbitrary-precision numerals. With no tweak, the first CBC-MAC block (`P`)
//! depends only on the length, so its encryption is computed once per length: a round then
//! costs one AES block. Up to 18 digits every step fits 64 bits and eight numbers go through
//! the rounds together ([`Narrow`]); up to 10 digits every round's value can be tabulated
//! once ([`Table`]) and a round is a lookup.

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

/// How many numbers [`Permutation::apply_all`] takes through the rounds together: eight
/// independent AES blocks keep AES-NI's pipeline full where one block would wait on the last.
const LANES: usize = 8;

/// [`Ff1`] for one length and no tweak, with `P` encrypted once: what a model's serials use.
#[derive(Debug, Clone)]
pub struct Permutation {
    ff1: Ff1,
    shape: Shape,
    p: [u8; 16],
    /// Lengths up to 18 digits, where every step fits a `u64` (see [`Narrow`]).
    narrow: Option<Narrow>,
    /// Every round's value for every half, once [`Permutation::tabulate`] made it; shared
    /// by the clones.
    table: Option<std::sync::Arc<Table>>,
}

/// Halves of at most this many digits are tabulated (see [`Table`]): up to 10 digits, at
/// most 4 MiB.
const TABLE_HALF_DIGITS: u32 = 5;

/// With no tweak, round `i`'s value depends on `i` and the half `B` alone, and a half of
/// `v` digits has `10^v` values: for up to 10 digits, every round's `y mod m` for every half
/// fits a table (`5 * (10^u + 10^v)` entries), built with as many AES blocks as
/// `(10^u + 10^v) / 2` serials cost (1,000 at 6 digits, 10,000 at 8, 100,000 at 10). A round
/// is then one lookup and an addition.
#[derive(Debug)]
struct Table {
    /// `rounds[i][b]`: `y mod m` of round `i` for the half `b`.
    rounds: Vec<Vec<u32>>,
}

/// The constants of a length of at most 18 digits. Both halves are below `10^9`, `NUM(B)`
/// takes at most 4 bytes and `y` is the first 8 bytes of the round's block (`d = 8`): a
/// round is one AES block, one 64-bit remainder and a subtraction, where the general path
/// divides 128-bit numbers twice.
#[derive(Debug, Clone, Copy)]
struct Narrow {
    /// `10^u` and `10^v`: the moduli of the even and the odd rounds.
    mu: u64,
    mv: u64,
    /// `floor((2^64 - 1) / 10^u)` and the same for `v`: a remainder by multiplication.
    mu_inverse: u64,
    mv_inverse: u64,
    /// `8 * b`: where the round number sits in `Q` (one byte above `NUM(B)`).
    round_shift: u32,
    /// `P` encrypted, as one number: a round's block is `p ^ Q`.
    p: u128,
}

impl Narrow {
    fn new(s: &Shape, p: &[u8; 16]) -> Option<Narrow> {
        let (mu, mv) = (10u64.pow(s.u), 10u64.pow(s.v));
        (s.d == 8).then(|| Narrow {
            mu,
            mv,
            mu_inverse: u64::MAX / mu,
            mv_inverse: u64::MAX / mv,
            round_shift: 8 * s.b as u32,
            p: u128::from_be_bytes(*p),
        })
    }

    /// The modulus of round `i` and its inverse.
    fn modulus(&self, i: u8) -> (u64, u64) {
        if i.is_multiple_of(2) {
            (self.mu, self.mu_inverse)
        } else {
            (self.mv, self.mv_inverse)
        }
    }

    /// The blocks of round `i` for each half in `halves` (at most `LANES`), encrypted: `y`
    /// of each is [`first_word`] of its block.
    fn round_blocks(&self, aes: &Aes128, i: u8, halves: &[u64]) -> [aes::Block; LANES] {
        let mut blocks = [aes::Block::default(); LANES];
        for (block, &x) in blocks.iter_mut().zip(halves) {
            // Q = 0^(15-b) || [i] || [x]^b: one block, since there is no tweak.
            let q = (u128::from(i) << self.round_shift) | u128::from(x);
            *block = (self.p ^ q).to_be_bytes().into();
        }
        aes.encrypt_blocks(&mut blocks[..halves.len()]);
        blocks
    }

    /// Encrypts each of `xs` (at most `LANES`) in place.
    fn encrypt(&self, aes: &Aes128, xs: &mut [u64]) {
        let n = xs.len();
        let (mut a, mut b) = ([0u64; LANES], [0u64; LANES]);
        for j in 0..n {
            (a[j], b[j]) = (xs[j] / self.mv, xs[j] % self.mv);
        }
        for i in 0..ROUNDS {
            let (m, inverse) = self.modulus(i);
            let blocks = self.round_blocks(aes, i, &b[..n]);
            // Lane by lane, each step reading its block: scalar multiplications, where a
            // loop over an array of `y`s is vectorised into slower emulated ones.
            for (j, block) in blocks[..n].iter().enumerate() {
                // A is below m and y nearly reduced below 2m: two subtractions at most.
                let c = a[j] + nearly_reduced(first_word(block), m, inverse);
                let c = at_most_once_less(at_most_once_less(c, m), m);
                a[j] = b[j];
                b[j] = c;
            }
        }
        for j in 0..n {
            xs[j] = a[j] * self.mv + b[j];
        }
    }

    /// [`Narrow::encrypt`] of each of `xs` (at most `LANES`, all below `10^n`) by the round
    /// values in `table`.
    fn encrypt_by(&self, table: &Table, xs: &mut [u64]) {
        // Eight numbers side by side: each round of one waits on its lookup, and eight
        // independent chains keep the loads overlapping.
        let n = xs.len();
        let (mut a, mut b) = ([0u64; LANES], [0u64; LANES]);
        for j in 0..n {
            (a[j], b[j]) = (xs[j] / self.mv, xs[j] % self.mv);
        }
        for (i, values) in (0..ROUNDS).zip(&table.rounds) {
            let (m, _) = self.modulus(i);
            for j in 0..n {
                // Both below m: one subtraction at most.
                let c = at_most_once_less(a[j] + u64::from(values[b[j] as usize]), m);
                a[j] = b[j];
                b[j] = c;
            }
        }
        for j in 0..n {
            xs[j] = a[j] * self.mv + b[j];
        }
    }

    fn decrypt(&self, aes: &Aes128, x: u64) -> u64 {
        let (mut a, mut b) = (x / self.mv, x % self.mv);
        for i in (0..ROUNDS).rev() {
            let (m, inverse) = self.modulus(i);
            let y = first_word(&self.round_blocks(aes, i, &[a])[0]);
            let r = at_most_once_less(nearly_reduced(y, m, inverse), m);
            let c = if b >= r { b - r } else { b + m - r };
            b = a;
            a = c;
        }
        a * self.mv + b
    }
}

/// The first 8 bytes of `block` as a big-endian number: `y = NUM_2(S)` with `d = 8`.
fn first_word(block: &aes::Block) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&block[..8]);
    u64::from_be_bytes(first)
}

/// `y mod m` plus 0 or `m` (below `2m`), with `inverse = floor((2^64 - 1) / m)` for an `m`
/// that is not a power of two: the estimate `y * inverse / 2^64` of `y / m` (Barrett) is the
/// quotient or one less, and a multiplication costs a fraction of a 64-bit division.
fn nearly_reduced(y: u64, m: u64, inverse: u64) -> u64 {
    let quotient = ((u128::from(y) * u128::from(inverse)) >> 64) as u64;
    y - quotient * m
}

/// `c - m` if `c >= m`, else `c`, without a branch: the values are random, so a branch
/// would be mispredicted half the time. (`c - m` wraps to above `c` exactly when `c < m`.)
fn at_most_once_less(c: u64, m: u64) -> u64 {
    c.min(c.wrapping_sub(m))
}

impl Permutation {
    /// A permutation of `[0, 10^digits)`; `digits` in `MIN_DIGITS..=MAX_DIGITS`.
    pub fn new(key: &[u8; 16], digits: u8) -> Permutation {
        let ff1 = Ff1::new(key);
        let shape = Shape::new(u32::from(digits));
        let p = ff1.p_block(&shape, 0);
        let narrow = Narrow::new(&shape, &p);
        Permutation {
            ff1,
            shape,
            p,
            narrow,
            table: None,
        }
    }

    /// How many entries [`Permutation::tabulate`] would compute; `None` for a length too
    /// long to tabulate.
    pub fn table_len(&self) -> Option<u64> {
        let narrow = self.narrow.as_ref()?;
        (self.shape.v <= TABLE_HALF_DIGITS).then(|| 5 * (narrow.mu + narrow.mv))
    }

    /// Computes every round's value for every half, so that [`Permutation::apply_all`] costs
    /// table lookups instead of AES blocks: worth it for more numbers than
    /// [`Permutation::table_len`]. Nothing for a length too long to tabulate.
    pub fn tabulate(&mut self) {
        let Some(narrow) = self.narrow.filter(|_| self.table_len().is_some()) else {
            return;
        };
        let rounds = (0..ROUNDS)
            .map(|i| {
                let (m, inverse) = narrow.modulus(i);
                // Even rounds take the v-digit half, odd ones the u-digit half.
                let halves = if i.is_multiple_of(2) {
                    narrow.mv
                } else {
                    narrow.mu
                };
                let mut values = Vec::with_capacity(halves as usize);
                let all: Vec<u64> = (0..halves).collect();
                for lanes in all.chunks(LANES) {
                    let blocks = narrow.round_blocks(&self.ff1.aes, i, lanes);
                    for block in &blocks[..lanes.len()] {
                        let y = at_most_once_less(nearly_reduced(first_word(block), m, inverse), m);
                        // Below m <= 10^5.
                        values.push(y as u32);
                    }
                }
                values
            })
            .collect();
        self.table = Some(std::sync::Arc::new(Table { rounds }));
    }

    pub fn apply(&self, x: u64) -> u64 {
        let mut one = [x];
        self.apply_all(&mut one);
        one[0]
    }

    /// [`Permutation::apply`] to each of `xs`, in place: eight at a time where the length
    /// allows, which costs far less per number than one at a time.
    pub fn apply_all(&self, xs: &mut [u64]) {
        if let (Some(table), Some(narrow)) = (&self.table, &self.narrow) {
            let domain = narrow.mu * narrow.mv;
            for lanes in xs.chunks_mut(LANES) {
                // A number past the width (which callers never pass) is computed, as the
                // other paths do, rather than looked up past the table.
                if lanes.iter().all(|&x| x < domain) {
                    narrow.encrypt_by(table, lanes);
                } else {
                    narrow.encrypt(&self.ff1.aes, lanes);
                }
            }
            return;
        }
        match &self.narrow {
            Some(narrow) => xs
                .chunks_mut(LANES)
                .for_each(|lanes| narrow.encrypt(&self.ff1.aes, lanes)),
            None => xs
                .iter_mut()
                .for_each(|x| *x = self.ff1.encrypt(&self.shape, &self.p, &[], *x)),
        }
    }

    pub fn invert(&self, x: u64) -> u64 {
        match &self.narrow {
            Some(narrow) => narrow.decrypt(&self.ff1.aes, x),
            None => self.ff1.decrypt(&self.shape, &self.p, &[], x),
        }
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
    fn the_remainder_by_multiplication_is_off_by_one_modulus_at_most() {
        for k in 3..=9 {
            let m = 10u64.pow(k);
            let inverse = u64::MAX / m;
            for y in [
                0,
                1,
                m - 1,
                m,
                m + 1,
                u64::MAX,
                u64::MAX - 1,
                u64::MAX / 3,
                1 << 63,
            ] {
                let r = nearly_reduced(y, m, inverse);
                assert!(r < 2 * m, "{y} mod {m}: {r}");
                assert_eq!(r % m, y % m, "{y} mod {m}");
            }
        }
    }

    #[test]
    fn a_tabulated_permutation_is_the_same_permutation() {
        let ff1 = Ff1::new(&KEY);
        for digits in [MIN_DIGITS, 7, 8, 10] {
            let mut p = Permutation::new(&KEY, digits);
            let top = 10u64.pow(u32::from(digits)) - 1;
            // In the domain, and a few past it (computed, not looked up).
            let numbers: Vec<u64> = (0..500)
                .map(|x| x * 7_919 % top)
                .chain([top + 1, u64::MAX / 2])
                .collect();
            let computed: Vec<u64> = numbers.iter().map(|&x| p.apply(x)).collect();
            p.tabulate();
            assert!(p.table.is_some(), "{digits} digits tabulate");
            let mut xs = numbers.clone();
            p.apply_all(&mut xs);
            assert_eq!(xs, computed, "{digits}");
            let mut edges = [0, 1, top - 1, top];
            p.apply_all(&mut edges);
            for (x, y) in [0, 1, top - 1, top].into_iter().zip(edges) {
                assert_eq!(y, ff1.encrypt_with(digits, &[], x), "{digits}: {x}");
            }
        }
        // Eleven digits and more are computed, not tabulated.
        let mut p = Permutation::new(&KEY, 11);
        assert_eq!(p.table_len(), None);
        p.tabulate();
        assert!(p.table.is_none());
    }

    #[test]
    fn many_at_a_time_match_one_at_a_time_by_the_general_path() {
        let ff1 = Ff1::new(&KEY);
        for digits in [MIN_DIGITS, 8, 13, 18, MAX_DIGITS] {
            let p = Permutation::new(&KEY, digits);
            // 21 numbers: two full groups of eight and a short one.
            let mut xs: Vec<u64> = (1_000..1_021).collect();
            p.apply_all(&mut xs);
            for (x, y) in (1_000..1_021).zip(&xs) {
                assert_eq!(*y, ff1.encrypt_with(digits, &[], x), "{digits}: {x}");
                assert_eq!(p.invert(*y), x, "{digits}: {x}");
            }
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

//! The keys of random-order models: one master key (`SERIAL_KEY`, from a secret), one AES key
//! per model derived from it.
//!
//! `SERIAL_KEY` holds one or more master keys separated by commas, the current one first. A
//! model's scheme records the id of the master key it was declared under (a hash of that key,
//! not the key), so adding a new key in front later never changes an issued model's serials:
//! the model keeps finding its own key by id, as long as it stays in the list.

use std::num::NonZeroU32;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use super::ff1::Permutation;

/// `SERIAL_KEY`, as both services take it.
#[derive(Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// Master key(s) of random-order models, comma-separated, the current one first (from a
    /// secret; at least 16 bytes each). Without it, random-order models cannot be declared,
    /// issued or looked up.
    #[arg(long, env = "SERIAL_KEY", hide_env_values = true)]
    pub serial_key: Option<String>,
}

impl std::fmt::Debug for KeyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.serial_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("KeyArgs").field("serial_key", &set).finish()
    }
}

impl KeyArgs {
    pub fn keyring(&self) -> Result<Keyring, KeyError> {
        Keyring::parse(self.serial_key.as_deref())
    }
}

/// The shortest master key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Master keys by id; the first is the one new models get.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<(NonZeroU32, Vec<u8>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|(id, _)| key_id_text(id.get()))
            .collect();
        write!(f, "Keyring({})", ids.join(", "))
    }
}

/// A key id as shown to people: eight hex digits.
pub fn key_id_text(id: u32) -> String {
    format!("{id:08x}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("SERIAL_KEY: each key must be at least {MIN_KEY_BYTES} bytes")]
    TooShort,
    #[error(
        "random-order serials need a key: set SERIAL_KEY (one or more secrets of at least \
         {MIN_KEY_BYTES} bytes, comma-separated, the current one first)"
    )]
    NoKey,
    #[error("SERIAL_KEY does not hold the key {} this model was declared with", key_id_text(.0.get()))]
    Missing(NonZeroU32),
    #[error(
        "a random order needs a width of {} to {} digits",
        super::ff1::MIN_DIGITS,
        super::ff1::MAX_DIGITS
    )]
    Width,
}

impl Keyring {
    /// Reads `SERIAL_KEY`'s value; `None` or empty gives an empty keyring.
    pub fn parse(value: Option<&str>) -> Result<Keyring, KeyError> {
        let mut keys = Vec::new();
        for secret in value.unwrap_or("").split(',').map(str::trim) {
            if secret.is_empty() {
                continue;
            }
            if secret.len() < MIN_KEY_BYTES {
                return Err(KeyError::TooShort);
            }
            keys.push((id_of(secret.as_bytes()), secret.as_bytes().to_vec()));
        }
        Ok(Keyring { keys })
    }

    /// The id new random-order models are declared with.
    pub fn current(&self) -> Result<NonZeroU32, KeyError> {
        self.keys.first().map(|(id, _)| *id).ok_or(KeyError::NoKey)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The permutation of `model`'s numbers at `digits` digits, under the master key `id`.
    pub fn permutation(
        &self,
        id: NonZeroU32,
        model: &str,
        digits: u8,
    ) -> Result<Permutation, KeyError> {
        if !(super::ff1::MIN_DIGITS..=super::ff1::MAX_DIGITS).contains(&digits) {
            return Err(KeyError::Width);
        }
        let master = self
            .keys
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, m)| m)
            .ok_or(KeyError::Missing(id))?;
        Ok(Permutation::new(&model_key(master, model), digits))
    }
}

/// A master key's id: the first four bytes of a hash of it.
fn id_of(master: &[u8]) -> NonZeroU32 {
    let digest = Sha256::new()
        .chain_update(b"sn serial key id\0")
        .chain_update(master)
        .finalize();
    let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    NonZeroU32::new(id).unwrap_or(NonZeroU32::MIN)
}

/// The AES-128 key of one model: HKDF-SHA256 of the master key, with the model code as info.
fn model_key(master: &[u8], model: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    Hkdf::<Sha256>::new(Some(b"sn serial order v1"), master)
        .expand(model.as_bytes(), &mut key)
        .expect("16 bytes is a valid HKDF-SHA256 length");
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_id_and_each_model_gets_its_own() {
        let old = "an old master key that is long enough";
        let ring = Keyring::parse(Some(old)).unwrap();
        let id = ring.current().unwrap();
        let a = ring.permutation(id, "0111", 8).unwrap();
        let b = ring.permutation(id, "0112", 8).unwrap();
        assert_ne!(
            (0..100).map(|n| a.apply(n)).collect::<Vec<_>>(),
            (0..100).map(|n| b.apply(n)).collect::<Vec<_>>()
        );
        // A new key in front: new models get it, the old model keeps its serials.
        let rotated = Keyring::parse(Some(&format!("a brand new master key here, {old}"))).unwrap();
        assert_ne!(rotated.current().unwrap(), id);
        let again = rotated.permutation(id, "0111", 8).unwrap();
        assert_eq!(a.apply(42), again.apply(42));
        assert_eq!(
            Keyring::parse(Some("a brand new master key here"))
                .unwrap()
                .permutation(id, "0111", 8)
                .unwrap_err(),
            KeyError::Missing(id)
        );
        assert_eq!(
            Keyring::parse(None).unwrap().current(),
            Err(KeyError::NoKey)
        );
        assert_eq!(
            Keyring::parse(Some("short")).unwrap_err(),
            KeyError::TooShort
        );
        assert!(format!("{ring:?}").contains(&key_id_text(id.get())));
        assert!(
            !format!("{ring:?}").contains(old),
            "the key itself is never shown"
        );
    }
}

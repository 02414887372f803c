//! How one entry is stored: its subject, id and CloudEvent JSON, a generated batch without
//! its serials (kept as its range, or in random order as its serials' digits as numbers).

use std::num::{NonZeroU32, NonZeroU64};

use common::serial::ff1::MAX_DIGITS;
use common::serial::{CheckDigit, Format, Order};

use super::{seq_of, LogError};

/// Writes a generated batch's serials again when the log reads the batch back. The log keeps
/// a batch's numbers, not its serials: how a number is written belongs to the task side
/// (`task::Serials`), handed to the log when it opens.
pub trait WriteSerials: Send + Sync {
    /// Whether the generator writes serials of `model` in `format`: a batch it could not have
    /// written reads as corrupt.
    fn writes(&self, model: &str, format: Format) -> bool;

    /// Appends the serials of numbers `first..first + count` the way a generated event
    /// carries them (`"a","b",...`).
    fn write_range(&self, model: &str, format: Format, first: u64, count: u64, out: &mut Vec<u8>);

    /// Appends serials written as `format` (sequential) writes each of `numbers`, the way a
    /// generated event carries them.
    fn write_numbers(&self, model: &str, format: Format, numbers: &[u64], out: &mut Vec<u8>);
}

/// One logged event: the subject it goes to, its event id (`Nats-Msg-Id`) and its
/// CloudEvent JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub subject: String,
    pub id: String,
    pub payload: bytes::Bytes,
    /// Set for a generated batch: where its serials sit in `payload`, and how to write them
    /// again. The log then stores the batch without them (a few hundred bytes instead of a
    /// few hundred KiB), and reading it back gives the same payload byte for byte.
    pub serials: Option<SerialsAt>,
}

/// The serials of a generated batch, as a position in its payload and the range they render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialsAt {
    /// The bytes between the event's `"serials":[` and `]`.
    pub bytes: std::ops::Range<usize>,
    pub code_model: String,
    pub format: Format,
    pub first: u64,
    pub count: u64,
}

/// Marks an entry stored without its serials. A stored CloudEvent starts with `{`.
pub(super) const WITHOUT_SERIALS: u8 = 1;
/// Marks a random-order batch stored with its serials as numbers: each serial's digits are
/// its number's image under the model's permutation, kept in as few bytes as the width needs
/// (see [`image_bytes`]). They are written again from the images alone, without the model's
/// key, and a 10,000-serial batch takes about 40 KiB instead of 170 (small enough for sled
/// to keep inline in its log rather than in a file of its own).
const WITH_IMAGES: u8 = 2;
/// No event is larger (NATS's default message limit; batches stay under 256 KiB): an entry
/// that would re-render to more is corrupt, and is not given the memory it asks for.
const MAX_EVENT_BYTES: u128 = 1 << 20;

fn put_str(v: &mut Vec<u8>, field: &str) {
    v.extend_from_slice(&(field.len() as u16).to_be_bytes());
    v.extend_from_slice(field.as_bytes());
}

pub(super) fn check_code(c: CheckDigit) -> u8 {
    match c {
        CheckDigit::None => 0,
        CheckDigit::Gs1 => 1,
        CheckDigit::Luhn => 2,
    }
}

pub(super) fn check_of(code: u8) -> Option<CheckDigit> {
    Some(match code {
        0 => CheckDigit::None,
        1 => CheckDigit::Gs1,
        2 => CheckDigit::Luhn,
        _ => return None,
    })
}

/// Reads a stored entry front to back; every read past the end is `Corrupt`.
struct Reader<'a> {
    rest: &'a [u8],
    seq: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if self.rest.len() < n {
            return Err(LogError::Corrupt(self.seq));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, LogError> {
        Ok(seq_of(self.take(8)?))
    }

    fn str(&mut self) -> Result<String, LogError> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let text = self.take(len)?;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|_| LogError::Corrupt(self.seq))
    }
}

impl Entry {
    /// A random-order batch: stored as [`WITH_IMAGES`], which logs before version 2 lack.
    pub(super) fn is_random(&self) -> bool {
        self.serials
            .as_ref()
            .is_some_and(|s| s.format.order == Order::Random)
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.subject.len() + self.id.len());
        put_str(&mut v, &self.subject);
        put_str(&mut v, &self.id);
        let Some(s) = &self.serials else {
            v.extend_from_slice(&self.payload);
            return v;
        };
        let random = s.format.order == Order::Random;
        v.push(if random { WITH_IMAGES } else { WITHOUT_SERIALS });
        v.push(s.format.width);
        v.push(check_code(s.format.check_digit));
        v.extend_from_slice(&s.first.to_be_bytes());
        v.extend_from_slice(&s.count.to_be_bytes());
        put_str(&mut v, &s.code_model);
        if random {
            let key_id = s.format.key_id.map_or(0, NonZeroU32::get);
            v.extend_from_slice(&key_id.to_be_bytes());
            let one_in = s.format.one_in.map_or(0, NonZeroU64::get);
            v.extend_from_slice(&one_in.to_be_bytes());
        }
        v.extend_from_slice(&(s.bytes.start as u64).to_be_bytes());
        v.extend_from_slice(&self.payload[..s.bytes.start]);
        if random {
            put_images(&self.payload[s.bytes.clone()], s, &mut v);
        }
        v.extend_from_slice(&self.payload[s.bytes.end..]);
        v
    }

    pub(super) fn decode(
        seq: u64,
        raw: &[u8],
        serials: &dyn WriteSerials,
    ) -> Result<Entry, LogError> {
        let corrupt = || LogError::Corrupt(seq);
        let mut r = Reader { rest: raw, seq };
        let subject = r.str()?;
        let id = r.str()?;
        let random = r.rest.first() == Some(&WITH_IMAGES);
        if !random && r.rest.first() != Some(&WITHOUT_SERIALS) {
            return Ok(Entry {
                subject,
                id,
                payload: bytes::Bytes::copy_from_slice(r.rest),
                serials: None,
            });
        }
        r.take(1)?;
        let width = r.u8()?;
        let check_digit = check_of(r.u8()?).ok_or_else(corrupt)?;
        let mut format = Format::new(width, check_digit);
        let (first, count) = (r.u64()?, r.u64()?);
        let code_model = r.str()?;
        if random {
            format.order = Order::Random;
            format.key_id = NonZeroU32::new(u32::from_be_bytes(
                r.take(4)?.try_into().map_err(|_| corrupt())?,
            ));
            format.one_in = NonZeroU64::new(r.u64()?);
        }
        let head = usize::try_from(r.u64()?).map_err(|_| corrupt())?;
        let head = r.take(head)?;
        let images = if random {
            let len = u128::from(count) * image_bytes(width) as u128;
            if len > MAX_EVENT_BYTES || width > MAX_DIGITS {
                return Err(corrupt());
            }
            Some(r.take(len as usize)?)
        } else {
            None
        };
        let tail = r.rest;
        // Only what the generator can have written: a model and scheme it writes, a width it
        // accepts, numbers within u64, and a size an event can have.
        let serial_len = format.serial_len(&code_model);
        let size = u128::from(count) * (serial_len as u128 + 3) + (head.len() + tail.len()) as u128;
        if !(1..=20).contains(&width)
            || !serials.writes(&code_model, Format::new(width, check_digit))
            || u128::from(first) + u128::from(count) > u128::from(u64::MAX) + 1
            || size > MAX_EVENT_BYTES
        {
            return Err(corrupt());
        }
        let mut payload =
            Vec::with_capacity(head.len() + tail.len() + count as usize * (serial_len + 3));
        payload.extend_from_slice(head);
        let start = payload.len();
        match images {
            // Each image is written as a sequential scheme writes that number: the same
            // digits, and the check digit computed over them.
            Some(images) => {
                let numbers = numbers_of(images, width).ok_or_else(corrupt)?;
                let sequential = Format::new(width, check_digit);
                serials.write_numbers(&code_model, sequential, &numbers, &mut payload);
            }
            None => serials.write_range(&code_model, format, first, count, &mut payload),
        }
        let bytes = start..payload.len();
        payload.extend_from_slice(tail);
        Ok(Entry {
            subject,
            id,
            payload: payload.into(),
            serials: Some(SerialsAt {
                bytes,
                code_model,
                format,
                first,
                count,
            }),
        })
    }
}

/// Bytes of one image of a `width`-digit random-order serial: enough for `10^width - 1`.
pub(super) fn image_bytes(width: u8) -> usize {
    let top = 10u64.saturating_pow(u32::from(width)) - 1;
    (64 - top.leading_zeros() as usize).div_ceil(8)
}

/// Appends the image of each serial in `serials` (a batch's `"a","b",...`, every serial
/// `model + width digits + optional check digit`): its digits as a number, in
/// [`image_bytes`] bytes, big-endian.
fn put_images(serials: &[u8], s: &SerialsAt, v: &mut Vec<u8>) {
    let len = s.format.serial_len(&s.code_model);
    let digits = s.code_model.len()..s.code_model.len() + usize::from(s.format.width);
    let n = image_bytes(s.format.width);
    v.reserve(n * s.count as usize);
    // Each serial sits in quotes, the next one three bytes (`","`) after it.
    for quoted in serials.chunks(len + 3) {
        let image = quoted[1..][digits.clone()]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        v.extend_from_slice(&image.to_be_bytes()[8 - n..]);
    }
}

/// The numbers `images` holds (as [`put_images`] stored them); `None` for an image wider
/// than `width` digits.
fn numbers_of(images: &[u8], width: u8) -> Option<Vec<u64>> {
    let n = image_bytes(width);
    let top = 10u64.checked_pow(u32::from(width))?;
    images
        .chunks(n)
        .map(|bytes| {
            let mut word = [0u8; 8];
            word[8 - n..].copy_from_slice(bytes);
            Some(u64::from_be_bytes(word)).filter(|&image| image < top)
        })
        .collect()
}

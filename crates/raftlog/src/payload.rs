//! How application payloads become bytes in a record: every payload type that rkyv can
//! archive and validate is a [`LogPayload`]. Decoding validates the archive, so a payload
//! that passed the record checksum but is not a valid archive is an error, never UB.

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{self, Strategy};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("payload codec: {0}")]
pub struct PayloadError(pub String);

/// A type that can be stored as an entry payload.
pub trait LogPayload: Sized {
    /// Append the archived form of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), PayloadError>;
    /// Decode from archived bytes that start 16-byte aligned.
    fn decode(bytes: &[u8]) -> Result<Self, PayloadError>;
}

impl<T> LogPayload for T
where
    T: rkyv::Archive + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
    T::Archived:
        for<'a> CheckBytes<HighValidator<'a, rancor::Error>> + rkyv::Deserialize<T, Strategy<Pool, rancor::Error>>,
{
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(self).map_err(|e| PayloadError(e.to_string()))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        if (bytes.as_ptr() as usize).is_multiple_of(16) {
            return rkyv::from_bytes::<T, rancor::Error>(bytes).map_err(|e| PayloadError(e.to_string()));
        }
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| PayloadError(e.to_string()))
    }
}

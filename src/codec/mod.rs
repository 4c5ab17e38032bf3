//! Turning values into bytes and back.
//!
//! The default codec is serde with [postcard]: compact (varints, no field names),
//! maintained, `no_std`-grade fast, and able to write through a custom "flavor" — so
//! the sender encodes straight into the ring's free space, with no intermediate
//! allocation per message. The choice was measured against bitcode and wincode; see
//! `BENCHMARKS.md` ("Codec").
//!
//! [postcard]: https://docs.rs/postcard

use serde::{de::DeserializeOwned, Serialize};

use crate::ring::spsc::RawSink;

/// Why an in-place encode stopped.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The window was too small: encode into a buffer instead.
    Full,
    /// The value's `Serialize` failed.
    Codec(String),
}

struct RingFlavor<'a, 'g>(&'a mut RawSink<'g>);

impl postcard::ser_flavors::Flavor for RingFlavor<'_, '_> {
    type Output = usize;

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.0.push(data) {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.0.extend(data) {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    #[inline(always)]
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0.written())
    }
}

/// Encodes `value` into a reserved ring window; returns the bytes written.
#[inline]
pub(crate) fn encode_in_place<T: Serialize + ?Sized>(
    value: &T,
    sink: &mut RawSink<'_>,
) -> Result<usize, EncodeError> {
    postcard::serialize_with_flavor(value, RingFlavor(sink)).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => EncodeError::Full,
        e => EncodeError::Codec(e.to_string()),
    })
}

/// Encodes `value`, appending to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> crate::Result<()> {
    let buf = std::mem::take(out);
    *out = postcard::to_extend(value, buf).map_err(|e| crate::Error::Codec(e.to_string()))?;
    Ok(())
}

/// Encodes `value` into `buf` if it fits: `Ok(Some(len))`; `Ok(None)` when it does not
/// (encode into a vector instead).
#[inline]
pub(crate) fn encode_to_slice<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> crate::Result<Option<usize>> {
    match postcard::to_slice(value, buf) {
        Ok(used) => Ok(Some(used.len())),
        Err(postcard::Error::SerializeBufferFull) => Ok(None),
        Err(e) => Err(crate::Error::Codec(e.to_string())),
    }
}

/// Encodes `value` into a new vector.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> crate::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| crate::Error::Codec(e.to_string()))
}

/// Decodes a `T` from exactly `bytes`.
#[inline]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> crate::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| crate::Error::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_an_enum_and_a_struct() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        enum Msg {
            Int(u64),
            Done,
        }
        for m in [Msg::Int(0), Msg::Int(u64::MAX), Msg::Done] {
            assert_eq!(decode::<Msg>(&encode(&m).unwrap()).unwrap(), m);
        }
        let v = (String::from("hello"), vec![1u8, 2, 3], 42i32);
        let mut buf = vec![9];
        encode_into(&v, &mut buf).unwrap();
        assert_eq!(buf[0], 9);
        assert_eq!(decode::<(String, Vec<u8>, i32)>(&buf[1..]).unwrap(), v);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<(String, u64)>(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}

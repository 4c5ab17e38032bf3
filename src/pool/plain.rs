//! Plain-data chunks: when the items (or the results) of a call are primitive numbers
//! (`u8`…`u128`, `i8`…`i128`, `usize`, `isize`, `f32`, `f64`), a chunk travels as the
//! items' own bytes, one copy each way, instead of through serde's per-item encoding.
//!
//! Which types qualify is decided from the type alone ([`is_plain`]), so the pool and a
//! worker (the same executable, on the same machine) always agree; the pool still says
//! which format it used in each task ([`super::worker`]), so a task is never read in the
//! wrong one. The bytes are the machine's own representation (both ends run here).
//!
//! Only `Any` downcasts and `bytemuck` casts: no `unsafe`. The type tests compare
//! constant `TypeId`s, which the compiler folds away.

use std::any::{Any, TypeId};
use std::ops::Range;
use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Error, Result};

/// A `T` as a `U` when they are the same type; `Err(v)` otherwise. No copy, no
/// allocation.
fn same<T: 'static, U: 'static>(v: T) -> std::result::Result<U, T> {
    let mut slot = Some(v);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(u) => Ok(u.take().expect("the slot was just filled")),
        None => Err(slot.expect("the slot was not taken")),
    }
}

/// A call's plain input, shared by the pool threads that send its chunks.
pub(super) trait Items: Send + Sync {
    /// The bytes of `self[range]`.
    fn bytes(&self, range: Range<usize>) -> &[u8];
}

impl<P: Pod + Send + Sync> Items for Vec<P> {
    fn bytes(&self, range: Range<usize>) -> &[u8] {
        bytemuck::cast_slice(&self[range])
    }
}

/// `items` as shared plain input; `Err(items)` when `T` is not plain.
pub(super) fn share<T: 'static>(items: Vec<T>) -> std::result::Result<Arc<dyn Items>, Vec<T>> {
    struct Share<T>(Vec<T>);
    impl<T: 'static> PlainOp<T> for Share<T> {
        type Out = std::result::Result<Arc<dyn Items>, Vec<T>>;
        fn plain<P: Pod + Send + Sync>(self) -> Self::Out {
            same::<Vec<T>, Vec<P>>(self.0).map(|v| Arc::new(v) as Arc<dyn Items>)
        }
        fn other(self) -> Self::Out {
            Err(self.0)
        }
    }
    with_plain::<T, _>(Share(items))
}

/// An operation on a plain element type `P`, run by [`with_plain`] once it has found
/// which primitive `T` is.
trait PlainOp<T> {
    type Out;
    fn plain<P: Pod + Send + Sync>(self) -> Self::Out;
    fn other(self) -> Self::Out;
}

/// Runs `op` with the primitive type that `T` is, or `op.other()` when `T` is none.
fn with_plain<T: 'static, O: PlainOp<T>>(op: O) -> O::Out {
    let t = TypeId::of::<T>();
    let is = |id: TypeId| t == id;
    if is(TypeId::of::<u8>()) {
        op.plain::<u8>()
    } else if is(TypeId::of::<u16>()) {
        op.plain::<u16>()
    } else if is(TypeId::of::<u32>()) {
        op.plain::<u32>()
    } else if is(TypeId::of::<u64>()) {
        op.plain::<u64>()
    } else if is(TypeId::of::<u128>()) {
        op.plain::<u128>()
    } else if is(TypeId::of::<usize>()) {
        op.plain::<usize>()
    } else if is(TypeId::of::<i8>()) {
        op.plain::<i8>()
    } else if is(TypeId::of::<i16>()) {
        op.plain::<i16>()
    } else if is(TypeId::of::<i32>()) {
        op.plain::<i32>()
    } else if is(TypeId::of::<i64>()) {
        op.plain::<i64>()
    } else if is(TypeId::of::<i128>()) {
        op.plain::<i128>()
    } else if is(TypeId::of::<isize>()) {
        op.plain::<isize>()
    } else if is(TypeId::of::<f32>()) {
        op.plain::<f32>()
    } else if is(TypeId::of::<f64>()) {
        op.plain::<f64>()
    } else {
        op.other()
    }
}

/// Whether `T` travels as plain bytes.
pub(super) fn is_plain<T: 'static>() -> bool {
    struct Test;
    impl<T> PlainOp<T> for Test {
        type Out = bool;
        fn plain<P: Pod + Send + Sync>(self) -> bool {
            true
        }
        fn other(self) -> bool {
            false
        }
    }
    with_plain::<T, _>(Test)
}

/// Appends the bytes of `items[range]` to `out`; `false` (nothing written) when `T` is
/// not plain.
pub(super) fn encode<T: 'static>(items: &Vec<T>, range: Range<usize>, out: &mut Vec<u8>) -> bool {
    struct Encode<'a, T>(&'a Vec<T>, Range<usize>, &'a mut Vec<u8>);
    impl<T: 'static> PlainOp<T> for Encode<'_, T> {
        type Out = bool;
        fn plain<P: Pod + Send + Sync>(self) -> bool {
            let Some(v) = (self.0 as &dyn Any).downcast_ref::<Vec<P>>() else {
                return false;
            };
            self.2.extend_from_slice(bytemuck::cast_slice(&v[self.1]));
            true
        }
        fn other(self) -> bool {
            false
        }
    }
    with_plain::<T, _>(Encode(items, range, out))
}

/// Appends the bytes of `items` to `out`; `Err(items)` when `T` is not plain.
pub(super) fn encode_vec<T: 'static>(
    items: Vec<T>,
    out: &mut Vec<u8>,
) -> std::result::Result<(), Vec<T>> {
    let range = 0..items.len();
    if encode(&items, range, out) {
        Ok(())
    } else {
        Err(items)
    }
}

/// The elements in `bytes`, appended to `out`: `Ok(false)` when `T` is not plain,
/// an error when `bytes` is not a whole number of elements.
pub(super) fn decode_into<T: 'static>(bytes: &[u8], out: &mut Vec<T>) -> Result<bool> {
    struct Decode<'a, T>(&'a [u8], &'a mut Vec<T>);
    impl<T: 'static> PlainOp<T> for Decode<'_, T> {
        type Out = Result<bool>;
        fn plain<P: Pod + Send + Sync>(self) -> Result<bool> {
            let Some(out) = (self.1 as &mut dyn Any).downcast_mut::<Vec<P>>() else {
                return Ok(false);
            };
            whole::<P>(self.0)?;
            let size = std::mem::size_of::<P>();
            match bytemuck::try_cast_slice::<u8, P>(self.0) {
                Ok(items) => out.extend_from_slice(items),
                Err(_) => out.extend(
                    self.0
                        .chunks_exact(size)
                        .map(bytemuck::pod_read_unaligned::<P>),
                ),
            }
            Ok(true)
        }
        fn other(self) -> Result<bool> {
            Ok(false)
        }
    }
    with_plain::<T, _>(Decode(bytes, out))
}

/// `target` applied to each of the plain items in `bytes`, read in place: `Ok(None)`
/// when `A` is not plain, an error when `bytes` is not a whole number of items. A panic
/// of `target` unwinds out of here.
pub(super) fn map_bytes<A: 'static, R: 'static>(
    target: fn(A) -> R,
    bytes: &[u8],
) -> Result<Option<Vec<R>>> {
    struct MapBytes<'a, A, R>(fn(A) -> R, &'a [u8]);
    impl<A: 'static, R: 'static> PlainOp<A> for MapBytes<'_, A, R> {
        type Out = Result<Option<Vec<R>>>;
        fn plain<P: Pod + Send + Sync>(self) -> Self::Out {
            let Some(&g) = (&self.0 as &dyn Any).downcast_ref::<fn(P) -> R>() else {
                return Ok(None);
            };
            whole::<P>(self.1)?;
            let items = self.1.chunks_exact(std::mem::size_of::<P>());
            Ok(Some(
                items
                    .map(|b| g(bytemuck::pod_read_unaligned::<P>(b)))
                    .collect(),
            ))
        }
        fn other(self) -> Self::Out {
            Ok(None)
        }
    }
    with_plain::<A, _>(MapBytes(target, bytes))
}

/// `target` applied to each of the plain items in `bytes`, its results appended to
/// `out` as plain bytes, in one pass: for a target whose result is its argument's type
/// (`Ok(false)` for any other; an error when `bytes` is not a whole number of items).
/// A panic of `target` unwinds out of here, with some results written.
pub(super) fn map_into<A: 'static, R: 'static>(
    target: fn(A) -> R,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool> {
    struct MapInto<'a, A, R>(fn(A) -> R, &'a [u8], &'a mut Vec<u8>);
    impl<A: 'static, R: 'static> PlainOp<A> for MapInto<'_, A, R> {
        type Out = Result<bool>;
        fn plain<P: Pod + Send + Sync>(self) -> Self::Out {
            let Some(&g) = (&self.0 as &dyn Any).downcast_ref::<fn(P) -> P>() else {
                return Ok(false);
            };
            whole::<P>(self.1)?;
            let out = self.2;
            out.reserve(self.1.len());
            for b in self.1.chunks_exact(std::mem::size_of::<P>()) {
                let r = g(bytemuck::pod_read_unaligned::<P>(b));
                out.extend_from_slice(bytemuck::bytes_of(&r));
            }
            Ok(true)
        }
        fn other(self) -> Self::Out {
            Ok(false)
        }
    }
    with_plain::<A, _>(MapInto(target, bytes, out))
}

/// An error unless `bytes` is a whole number of `P`s.
fn whole<P>(bytes: &[u8]) -> Result<()> {
    let size = std::mem::size_of::<P>();
    if bytes.len() % size != 0 {
        return Err(Error::Codec(format!(
            "{} bytes are not a whole number of {size}-byte items",
            bytes.len()
        )));
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn plain_types_round_trip_and_others_do_not() {
        assert!(is_plain::<u64>() && is_plain::<f32>() && is_plain::<i128>());
        assert!(!is_plain::<bool>() && !is_plain::<(u64, u64)>() && !is_plain::<String>());
        let v: Vec<u64> = (0..100).map(|x| x * x).collect();
        let mut b = vec![7u8]; // an odd offset: the unaligned path
        assert!(encode(&v, 10..20, &mut b));
        assert_eq!(b.len(), 1 + 80);
        let mut back: Vec<u64> = vec![];
        assert!(decode_into(&b[1..], &mut back).unwrap());
        assert_eq!(back, v[10..20]);
        assert!(decode_into(&b[1..80], &mut back).is_err());
        assert!(!decode_into(&b[1..], &mut Vec::<String>::new()).unwrap());
        assert_eq!(same::<Vec<u64>, Vec<u64>>(back.clone()), Ok(back));
        assert!(same::<u32, u64>(3).is_err());
        let shared = share(v.clone()).ok().unwrap();
        assert_eq!(shared.bytes(10..20), &b[1..]);
        assert!(share(vec![true]).is_err());
        fn double(x: u64) -> u64 {
            2 * x
        }
        let doubled = map_bytes(double, &b[1..]).unwrap().unwrap();
        assert_eq!(doubled, v[10..20].iter().map(|x| 2 * x).collect::<Vec<_>>());
        assert!(map_bytes(double, &b[1..80]).is_err());
        assert!(map_bytes(|s: String| s, &b[1..]).unwrap().is_none());
        let mut out = vec![9u8];
        assert!(map_into(double, &b[1..], &mut out).unwrap());
        assert_eq!(&out[1..], bytemuck::cast_slice::<u64, u8>(&doubled));
        assert!(!map_into(|x: u64| x as u32, &b[1..], &mut out).unwrap());
        assert!(map_into(double, &b[1..80], &mut out).is_err());
        let s = vec![String::from("a")];
        assert!(encode_vec(s, &mut b).is_err());
    }
}

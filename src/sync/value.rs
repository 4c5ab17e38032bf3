//! `Value<T>` and `Array<T>`: plain-old-data in shared memory behind a robust lock
//! (Python's `multiprocessing.Value` and `Array`).

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::deadline::Deadline;
use super::lock::{acquire, LockGuard};
use super::shared::{Obj, What, DATA_OFFSET};
use crate::error::{Error, LockError, Result, SizeLimit};

fn check_layout<T>() -> Result<()> {
    if align_of::<T>() > DATA_OFFSET {
        return Err(Error::InvalidState(
            "shared values support alignments up to 128 bytes",
        ));
    }
    Ok(())
}

/// Whether a received region holds `len` elements shaped like `T` (any `len` when `None`).
fn shape_fits<T>(obj: &Obj) -> bool {
    let [size, align, len] = obj.shape();
    size == size_of::<T>() as u64
        && align == align_of::<T>() as u64
        && align_of::<T>() <= DATA_OFFSET
        && usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<T>()))
            .is_some_and(|bytes| bytes <= obj.data_len())
}

fn create<T: Pod>(what: What, len: usize) -> Result<Arc<Obj>> {
    check_layout::<T>()?;
    // An overflowing length is an error here, before any region exists.
    let bytes = len
        .checked_mul(size_of::<T>())
        .ok_or(Error::CapacityTooLarge {
            what: "shared array",
            requested: (len as u64).saturating_mul(size_of::<T>() as u64),
            limit: isize::MAX as u64,
            bound: SizeLimit::Maximum,
        })?;
    Obj::create(
        what,
        bytes,
        [size_of::<T>() as u64, align_of::<T>() as u64, len as u64],
    )
}

// ----------------------------------------------------------------------------- Value

/// A `T` in shared memory with a robust lock (Python's `multiprocessing.Value`).
///
/// `T` is plain old data ([`bytemuck::Pod`]): any bytes are a valid `T`, so a value
/// written by another process, even half-written by one that died, is never undefined
/// behaviour. Clones and copies handed to child processes share the value.
///
/// # Examples
///
/// ```
/// use shmproc::Value;
///
/// let v = Value::new(41u64)?;
/// *v.lock().unwrap() += 1;
/// assert_eq!(v.get(), 42);
/// v.set(7);
/// assert_eq!(v.get(), 7);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Value<T> {
    obj: Arc<Obj>,
    _t: PhantomData<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

/// Holds a [`Value`]'s lock; dereferences to the value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    _lock: LockGuard<'a>,
    ptr: NonNull<T>,
    _t: PhantomData<&'a mut T>,
}

/// The guard of a blocking `lock()`, taken over from a dead holder if need be (a
/// blocking `lock()` fails only with `OwnerDied`, which carries the guard).
fn taken<G>(res: std::result::Result<G, LockError<G>>) -> G {
    res.unwrap_or_else(|e| {
        e.into_guard()
            .unwrap_or_else(|| unreachable!("lock() fails only with OwnerDied"))
    })
}

impl<T: Pod> Value<T> {
    /// Creates a shared value holding `value`.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created; [`Error::InvalidState`] for a `T`
    /// aligned to more than 128 bytes.
    pub fn new(value: T) -> Result<Value<T>> {
        let v = Value {
            obj: create::<T>(What::Value, 1)?,
            _t: PhantomData,
        };
        // The region is still private to this process: no lock needed, but it is cheap.
        v.set(value);
        Ok(v)
    }

    fn ptr(&self) -> NonNull<T> {
        // The data area is 128-byte aligned and holds at least one T (checked at
        // creation and when received), so the cast is aligned and in bounds.
        NonNull::new(self.obj.data().cast::<T>()).expect("mapping is never null")
    }

    fn guard(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            _lock: LockGuard::new(&self.obj),
            ptr: self.ptr(),
            _t: PhantomData,
        }
    }

    /// Takes the value's lock; the guard dereferences to the value.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding
    /// the lock (the value may be half-updated).
    ///
    /// # Examples
    ///
    /// A counter that a child and its parent both increment:
    ///
    /// ```
    /// use shmproc::{Process, Value};
    ///
    /// let counter = Value::new(0u64)?;
    /// let theirs = counter.clone();
    /// let mut child = Process::fork(move || {
    ///     for _ in 0..100 {
    ///         *theirs.lock().unwrap() += 1;
    ///     }
    /// });
    /// child.start()?;
    /// for _ in 0..100 {
    ///     *counter.lock().unwrap() += 1;
    /// }
    /// child.join()?;
    /// assert_eq!(child.exitcode(), Some(0));
    /// assert_eq!(counter.get(), 200);
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn lock(&self) -> std::result::Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        acquire(&self.obj.block().lock, Deadline::FOREVER, |_| self.guard())
    }

    /// Takes the lock if it is free.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while it is held; `OwnerDied` as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        acquire(&self.obj.block().lock, Deadline::Now, |_| self.guard())
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] when the time passed; `OwnerDied` as for `lock`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        acquire(&self.obj.block().lock, Deadline::after(timeout), |_| {
            self.guard()
        })
    }

    /// Reads the value under the lock (taking it over from a dead holder if need be).
    pub fn get(&self) -> T {
        *taken(self.lock())
    }

    /// Writes the value under the lock (taking it over from a dead holder if need be).
    pub fn set(&self, value: T) {
        *taken(self.lock()) = value;
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` is aligned and in bounds of the mapping, which outlives 'a; we
        // hold the lock, and every process accesses the value only under it, so nobody
        // writes while this reference lives; any bytes are a valid `T` (Pod).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the lock makes this the only access, and `&mut self`
        // the only reference in this process.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValueGuard")
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.obj.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Value {
            obj: Obj::deserialize(d, What::Value, |o| shape_fits::<T>(o) && o.shape()[2] == 1)?,
            _t: PhantomData,
        })
    }
}

// ----------------------------------------------------------------------------- Array

/// What an [`Array`] can be created from, like Python's `size_or_initializer`: a length
/// (zero-filled) or the initial elements.
pub trait ArrayInit<T> {
    /// The array's length.
    fn len(&self) -> usize;
    /// Whether the array is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes the initial elements into `dst` (already zeroed, `len()` long).
    fn fill(&self, dst: &mut [T]);
}

macro_rules! array_init_len {
    ($($t:ty),*) => {$(
        impl<T> ArrayInit<T> for $t {
            fn len(&self) -> usize {
                usize::try_from(*self).unwrap_or(usize::MAX)
            }
            fn fill(&self, _dst: &mut [T]) {}
        }
    )*};
}
array_init_len!(usize, u32, i32, u64);

impl<T: Copy> ArrayInit<T> for &[T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn fill(&self, dst: &mut [T]) {
        dst.copy_from_slice(self);
    }
}

impl<T: Copy> ArrayInit<T> for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn fill(&self, dst: &mut [T]) {
        dst.copy_from_slice(self);
    }
}

impl<T: Copy> ArrayInit<T> for &Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn fill(&self, dst: &mut [T]) {
        dst.copy_from_slice(self);
    }
}

impl<T: Copy, const N: usize> ArrayInit<T> for [T; N] {
    fn len(&self) -> usize {
        N
    }
    fn fill(&self, dst: &mut [T]) {
        dst.copy_from_slice(self);
    }
}

impl<T: Copy, const N: usize> ArrayInit<T> for &[T; N] {
    fn len(&self) -> usize {
        N
    }
    fn fill(&self, dst: &mut [T]) {
        dst.copy_from_slice(&self[..]);
    }
}

/// A fixed-length `[T]` in shared memory with a robust lock (Python's
/// `multiprocessing.Array`). The guard dereferences to `[T]`.
///
/// # Examples
///
/// ```
/// use shmproc::Array;
///
/// let a = Array::<u32>::new(4)?;          // zero-filled, like Array('I', 4)
/// a.lock().unwrap()[2] = 5;
/// assert_eq!(a.to_vec(), [0, 0, 5, 0]);
/// let b = Array::new([1u8, 2, 3])?;        // from initial elements
/// assert_eq!(b.get(1), 2);
/// assert_eq!(b.len(), 3);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Array<T> {
    obj: Arc<Obj>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            obj: self.obj.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

/// Holds an [`Array`]'s lock; dereferences to its elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    _lock: LockGuard<'a>,
    ptr: NonNull<T>,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: Pod> Array<T> {
    /// Creates a shared array from a length (zero-filled) or from initial elements.
    ///
    /// # Errors
    ///
    /// An OS error when the region cannot be created;
    /// [`Error::CapacityTooLarge`] when `len × size_of::<T>()` overflows or needs more
    /// than half of the memory left (see [`SizeLimit`]), before any of it is reserved;
    /// [`Error::InvalidState`] for a `T` aligned to more than 128 bytes.
    pub fn new(init: impl ArrayInit<T>) -> Result<Array<T>> {
        let len = init.len();
        let a = Array {
            obj: create::<T>(What::Array, len)?,
            len,
            _t: PhantomData,
        };
        match a.lock() {
            Ok(mut g) => init.fill(&mut g),
            Err(e) => {
                if let Some(mut g) = e.into_guard() {
                    init.fill(&mut g);
                }
            }
        }
        Ok(a)
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            _lock: LockGuard::new(&self.obj),
            // Aligned (128-byte data area, align_of T <= 128) and holds `len` elements.
            ptr: NonNull::new(self.obj.data().cast::<T>()).expect("mapping is never null"),
            len: self.len,
            _t: PhantomData,
        }
    }

    /// Takes the array's lock; the guard dereferences to `[T]`.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) when the previous holder died holding
    /// the lock (the elements may be half-updated).
    pub fn lock(&self) -> std::result::Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        acquire(&self.obj.block().lock, Deadline::FOREVER, |_| self.guard())
    }

    /// Takes the lock if it is free.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] while it is held; `OwnerDied` as for `lock`.
    pub fn try_lock(&self) -> std::result::Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        acquire(&self.obj.block().lock, Deadline::Now, |_| self.guard())
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] when the time passed; `OwnerDied` as for `lock`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        acquire(&self.obj.block().lock, Deadline::after(timeout), |_| {
            self.guard()
        })
    }

    fn locked(&self) -> ArrayGuard<'_, T> {
        taken(self.lock())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `index`, read under the lock.
    ///
    /// # Panics
    ///
    /// When `index >= len()`, like slice indexing.
    pub fn get(&self, index: usize) -> T {
        self.locked()[index]
    }

    /// Writes element `index` under the lock.
    ///
    /// # Panics
    ///
    /// When `index >= len()`, like slice indexing.
    pub fn set(&self, index: usize, value: T) {
        self.locked()[index] = value;
    }

    /// A copy of every element, read under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        self.locked().to_vec()
    }

    /// Overwrites every element under the lock.
    ///
    /// # Panics
    ///
    /// When `values.len() != len()`.
    pub fn copy_from_slice(&self, values: &[T]) {
        self.locked().copy_from_slice(values);
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is aligned, and `len` elements lie inside the mapping, which
        // outlives 'a (checked at creation and when received); we hold the lock, under
        // which alone every process accesses the elements; any bytes are a valid `T`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the lock and `&mut self` make this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.len)
            .finish()
    }
}

impl<T> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.obj.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let obj = Obj::deserialize(d, What::Array, shape_fits::<T>)?;
        let len = obj.shape()[2] as usize; // fits: checked by shape_fits
        Ok(Array {
            obj,
            len,
            _t: PhantomData,
        })
    }
}

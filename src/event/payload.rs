//! [`Payload`]: a type-erased value travelling through a channel or out of a leaf, stored
//! inline when it is small, so that the common messages (integers, pointers, `()`, small
//! structs) cost no allocation on their way through a general sync.
//!
//! ```text
//!  +--------------------------+------------+
//!  | data: 2 words            | vtable ptr |      size_of::<V>() <= 16, align <= 8: V itself
//!  +--------------------------+------------+      otherwise: data[0] is a Box<V>
//! ```
//!
//! The vtable says which type the payload holds (a `TypeId`, checked by every
//! [`Payload::downcast`]), where it lives, and how to drop it. Rejected alternative: the
//! `Box<dyn Any + Send>` it replaces, one allocation and one free per message.

use std::any::TypeId;
use std::mem::{ManuallyDrop, MaybeUninit};

/// Inline storage: two words, word-aligned.
type Inline = [MaybeUninit<usize>; 2];

/// What a payload holds and how to drop it.
struct VTable {
    type_id: fn() -> TypeId,
    /// Whether the value is inline (else `data[0]` is a `Box<V>`'s pointer).
    inline: bool,
    /// Drops the value in place.
    ///
    /// # Safety
    ///
    /// `data` holds a live value of the vtable's type, stored as `inline` says; it is not
    /// used afterwards.
    drop: unsafe fn(*mut Inline),
}

/// The vtable of payloads holding a `V`.
struct Of<V>(std::marker::PhantomData<V>);

impl<V: Send + 'static> Of<V> {
    const INLINE: bool =
        size_of::<V>() <= size_of::<Inline>() && align_of::<V>() <= align_of::<Inline>();

    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<V>,
        inline: Self::INLINE,
        drop: Self::drop,
    };

    /// # Safety
    ///
    /// As [`VTable::drop`].
    unsafe fn drop(data: *mut Inline) {
        if Self::INLINE {
            // SAFETY: the caller's contract: an inline `V` lives at `data`.
            unsafe { data.cast::<V>().drop_in_place() };
        } else {
            // SAFETY: the caller's contract: `data[0]` is the pointer of a `Box<V>` we own.
            drop(unsafe { Box::from_raw(data.cast::<*mut V>().read()) });
        }
    }
}

/// A type-erased, owned, `Send` value (see the module doc).
pub(crate) struct Payload {
    data: Inline,
    vtable: &'static VTable,
}

// SAFETY: a payload is only made from a `V: Send` (`Payload::new`), which it owns.
unsafe impl Send for Payload {}

impl Payload {
    /// Wraps `v`: inline if it fits, boxed otherwise.
    #[inline]
    pub(crate) fn new<V: Send + 'static>(v: V) -> Payload {
        let mut data: Inline = [MaybeUninit::uninit(); 2];
        if Of::<V>::INLINE {
            // SAFETY: `V` fits in `data` and is no more aligned (`Of::INLINE`).
            unsafe { data.as_mut_ptr().cast::<V>().write(v) };
        } else {
            // SAFETY: `data` has room for one pointer.
            unsafe {
                data.as_mut_ptr()
                    .cast::<*mut V>()
                    .write(Box::into_raw(Box::new(v)))
            };
        }
        Payload {
            data,
            vtable: &Of::<V>::VTABLE,
        }
    }

    /// The payload of a leaf that carries no value (`()`).
    #[inline]
    pub(crate) fn unit() -> Payload {
        Payload::new(())
    }

    /// Whether the payload holds a `V`.
    #[inline]
    pub(crate) fn is<V: 'static>(&self) -> bool {
        (self.vtable.type_id)() == TypeId::of::<V>()
    }

    /// The value, if it is a `V`; the payload back otherwise.
    #[inline]
    pub(crate) fn downcast<V: 'static>(self) -> Result<V, Payload> {
        if !self.is::<V>() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        let data = this.data.as_ptr();
        if this.vtable.inline {
            // SAFETY: the payload holds a `V` (checked above) stored inline; `this` is not
            // dropped, so the value moves out once.
            Ok(unsafe { data.cast::<V>().read() })
        } else {
            // SAFETY: the payload holds a `V` (checked above) in a box whose pointer is
            // `data[0]`; `this` is not dropped, so the box is taken once.
            Ok(*unsafe { Box::from_raw(data.cast::<*mut V>().read()) })
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        // SAFETY: `data` holds the vtable's value, stored as it says, and is not used again.
        unsafe { (self.vtable.drop)(&mut self.data) }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("inline", &self.vtable.inline)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Small values are stored inline and large ones boxed; both come back out unchanged, and
    /// a downcast to another type gives the payload back.
    #[test]
    fn values_come_back_out_inline_or_boxed() {
        let p = Payload::new(7u64);
        assert!(p.vtable.inline);
        let p = p.downcast::<u32>().expect_err("not a u32");
        assert_eq!(p.downcast::<u64>().ok(), Some(7));

        let big = [1u64, 2, 3, 4];
        let p = Payload::new(big);
        assert!(!p.vtable.inline);
        assert_eq!(p.downcast::<[u64; 4]>().ok(), Some(big));

        let p = Payload::new(String::from("sixteen bytes+8"));
        assert!(!p.vtable.inline, "a String is three words");
        assert_eq!(
            p.downcast::<String>().ok().as_deref(),
            Some("sixteen bytes+8")
        );

        assert!(Payload::unit().is::<()>());
        assert_eq!(
            Payload::new((1u32, 2u8)).downcast::<(u32, u8)>().ok(),
            Some((1, 2))
        );
    }

    /// A payload dropped without being taken drops its value once, inline or boxed.
    #[test]
    fn an_untaken_payload_drops_its_value_once() {
        let counted = Arc::new(());
        let p = Payload::new(counted.clone());
        assert!(p.vtable.inline);
        assert_eq!(Arc::strong_count(&counted), 2);
        drop(p);
        assert_eq!(Arc::strong_count(&counted), 1);

        let p = Payload::new((counted.clone(), [0u64; 3]));
        assert!(!p.vtable.inline);
        assert_eq!(Arc::strong_count(&counted), 2);
        drop(p);
        assert_eq!(Arc::strong_count(&counted), 1);

        let p = Payload::new(counted.clone());
        let back = p.downcast::<Arc<()>>().expect("an Arc");
        assert_eq!(Arc::strong_count(&counted), 2, "taken out, not dropped");
        drop(back);
        assert_eq!(Arc::strong_count(&counted), 1);
    }
}

//! [`Padded`]: a value alone on its cache lines, the crate's one padding
//! type.

/// Aligns (and so pads) `T` to 128 bytes: x86-64 prefetches cache lines in
/// pairs, so 128 keeps a frequently written global from sharing a line with
/// the read-mostly globals next to it (crossbeam's `CachePadded` does the
/// same).
///
/// Used for every global or array element that some threads write often
/// while others use its neighbours. Two types carry the same 128 themselves
/// instead, each saying why: [`crate::slot::Slot`] and
/// [`crate::lockfree::ring::Ring`].
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

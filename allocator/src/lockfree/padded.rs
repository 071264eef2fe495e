//! [`Padded`]: a value alone on its cache lines.

/// Aligns (and so pads) `T` to 128 bytes: x86-64 prefetches cache lines in
/// pairs, so 128 keeps a frequently written global from sharing a line with
/// the read-mostly globals next to it (crossbeam's `CachePadded` does the
/// same).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

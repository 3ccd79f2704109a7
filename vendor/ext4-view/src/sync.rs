// Origami addition to ext4-view (MIT OR Apache-2.0, as the crate): `Ext4`
// shared between threads.

//! The lock around `Ext4`'s shared mutable state: the reader, and each
//! set of the block cache.
//!
//! With the `std` feature it is a [`std::sync::Mutex`], which makes
//! [`Ext4`] (and [`File`], [`ReadDir`], [`DirEntry`]) `Send + Sync`:
//! threads share one loaded file system and its block cache instead of
//! loading it once per thread. Without `std` (`core` has no mutex) it is
//! a `RefCell`, as upstream had, and `Ext4` is neither.
//!
//! A panic while the lock is held does not poison it for good: the state
//! under it is consistent at every point where a panic can occur (the
//! block cache marks a slot empty before reading into it), so the next
//! user takes the lock as it is.
//!
//! [`Ext4`]: crate::Ext4
//! [`File`]: crate::File
//! [`ReadDir`]: crate::ReadDir
//! [`DirEntry`]: crate::DirEntry

#[cfg(feature = "std")]
pub(crate) struct Lock<T>(std::sync::Mutex<T>);

#[cfg(feature = "std")]
impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }

    /// Exclusive access until the guard is dropped.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(not(feature = "std"))]
pub(crate) struct Lock<T>(core::cell::RefCell<T>);

#[cfg(not(feature = "std"))]
impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::RefCell::new(value))
    }

    /// Exclusive access until the guard is dropped. Never nested (the
    /// block cache's set, then the reader, is the only order taken), so
    /// the borrow cannot fail.
    pub(crate) fn lock(&self) -> core::cell::RefMut<'_, T> {
        self.0.borrow_mut()
    }
}

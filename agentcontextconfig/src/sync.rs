//! Poisoned-mutex recovery, written once for the crate: [`lock`] returns a `std::sync::Mutex`'s
//! guard even when a thread panicked while holding it.
//!
//! Recovering is sound because no invariant spans a panic point. The store builds the next state in
//! a copy and swaps it in only once it is on disk, and the recency table changes by single inserts
//! and removes, so no panic can leave a half-applied change behind. A guard dropped by a panic
//! therefore leaves the data as consistent as any other unlock, while propagating the poison would
//! turn one panicked task into a panic in every later caller (request handlers, shutdown).
//!
//! It must not be used for a lock whose critical section could stop half-way through an update that
//! later readers rely on (check that when adding a section), and, these being std mutexes, no guard
//! it returns may be held across an `.await`.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering the guard of a poisoned mutex (see the module header).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

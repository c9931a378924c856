//! Poisoned-lock recovery, written once for the crate: [`lock`] (and [`read`]/[`write`] for
//! `RwLock`s) returns the guard even when a thread panicked while holding it.
//!
//! Recovering is sound because no invariant spans a panic point. Each critical section (the log
//! line buffer, the flusher handle, the event subscribers, the metrics tables and histograms, the
//! per-file lock map, the logged-skip set) appends to, takes from or replaces a whole value, or
//! bumps a counter, so no panic can leave a half-applied change behind. A guard dropped by a panic
//! therefore leaves the data as consistent as any other unlock, while propagating the poison would
//! turn one panicked task into a panic in every later caller (request handlers, shutdown).
//!
//! It must not be used for a lock whose critical section could stop half-way through an update that
//! later readers rely on (check that when adding a section), and, these being std mutexes, no guard
//! it returns may be held across an `.await`.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering the guard of a poisoned mutex (see the module header).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `m`, recovering the guard of a poisoned lock (see the module header).
pub(crate) fn read<T: ?Sized>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `m`, recovering the guard of a poisoned lock (see the module header).
pub(crate) fn write<T: ?Sized>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

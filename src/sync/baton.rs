//! A value that one thread at a time borrows, with a deadline on the wait.
//!
//! `std::sync::Mutex` cannot time out, so a second reader queued behind a
//! reader blocked forever would ignore its own timeout. A `Baton` keeps the
//! value in a mutex-protected slot: a thread takes it out, works without any
//! lock held, and puts it back when the `Held` guard drops. Waiters sleep on a
//! condvar until the value returns, their deadline passes, or the baton is
//! shut so that they must give up.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

pub struct Baton<T> {
    slot: Mutex<Slot<T>>,
    returned: Condvar,
}

struct Slot<T> {
    value: Option<T>,
    shut: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BatonError {
    Timeout,
    Shut,
}

/// The borrowed value; returned to the baton on drop (also during a panic).
pub struct Held<'a, T> {
    baton: &'a Baton<T>,
    value: Option<T>,
}

impl<T> Baton<T> {
    pub fn new(value: T) -> Self {
        Baton { slot: Mutex::new(Slot { value: Some(value), shut: false }), returned: Condvar::new() }
    }

    fn slot(&self) -> MutexGuard<'_, Slot<T>> {
        // A panic never happens while the slot lock is held, but recover anyway.
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for the value until `deadline` (`None` = forever). Fails with
    /// `Shut` once `shut` has been called, unless `even_if_shut` (the closer
    /// itself still needs the value to tear it down).
    pub fn take(&self, deadline: Option<Instant>, even_if_shut: bool) -> Result<Held<'_, T>, BatonError> {
        let mut slot = self.slot();
        loop {
            if slot.shut && !even_if_shut {
                return Err(BatonError::Shut);
            }
            if let Some(value) = slot.value.take() {
                return Ok(Held { baton: self, value: Some(value) });
            }
            slot = match deadline {
                None => self.returned.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(BatonError::Timeout);
                    }
                    self.returned.wait_timeout(slot, deadline - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    /// Makes every current and future waiter (except closers) give up.
    pub fn shut(&self) {
        self.slot().shut = true;
        self.returned.notify_all();
    }

    pub fn is_shut(&self) -> bool {
        self.slot().shut
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("held value present until drop")
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("held value present until drop")
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        let mut slot = self.baton.slot();
        slot.value = self.value.take();
        drop(slot);
        self.baton.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn second_taker_times_out_while_first_holds() {
        let baton = Baton::new(5);
        let held = baton.take(None, false).unwrap();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(baton.take(Some(deadline), false).err(), Some(BatonError::Timeout));
        drop(held);
        assert_eq!(*baton.take(Some(deadline), false).unwrap(), 5);
    }

    #[test]
    fn shut_wakes_waiters_but_not_closers() {
        let baton = Arc::new(Baton::new(1));
        let held = baton.take(None, false).unwrap();
        let waiter = {
            let baton = baton.clone();
            std::thread::spawn(move || baton.take(None, false).err())
        };
        std::thread::sleep(Duration::from_millis(10));
        baton.shut();
        assert_eq!(waiter.join().unwrap(), Some(BatonError::Shut));
        drop(held);
        assert!(baton.take(None, true).is_ok());
    }

    #[test]
    fn value_returns_after_panic() {
        let baton = Baton::new(vec![1]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut held = baton.take(None, false).unwrap();
            held.push(2);
            panic!("boom");
        }));
        assert!(r.is_err());
        assert_eq!(*baton.take(None, false).unwrap(), vec![1, 2]);
    }
}

//! A "latest wins" hand-off from a background thread to the application.
//!
//! The background thread offers each new value; the reader holds an ordinary
//! `crossbeam_channel::Receiver`. At most one value waits in the channel, the
//! newest; the thread never blocks on a slow reader, and memory never grows.
//! A value equal to the last one the reader got is not offered again.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

/// The sending side of a latest-wins channel. Dropping it disconnects the
/// readers once they have taken what is pending.
///
/// Values are offered as an `Arc<K>` and sent as a `T` made from it; `K` is
/// what equality is judged on (by default the value itself).
#[derive(Debug)]
pub(crate) struct Mailbox<T, K = T> {
    tx: Sender<T>,
    /// Our own handle on the channel, used to take back a value the reader
    /// has not taken yet when a newer one arrives.
    rx: Receiver<T>,
    /// The value that may still be in the channel. The copies kept here
    /// are shared with the offerer: the channel's value is the one copy
    /// made per offer.
    pending: Option<Arc<K>>,
    /// The newest value known to have reached the reader.
    delivered: Option<Arc<K>>,
}

impl<T, K: PartialEq> Mailbox<T, K> {
    /// Creates a mailbox and the receiver to hand to the application.
    pub(crate) fn new() -> (Mailbox<T, K>, Receiver<T>) {
        let (tx, rx) = bounded(1);
        let mailbox = Mailbox {
            tx,
            rx: rx.clone(),
            pending: None,
            delivered: None,
        };
        (mailbox, rx)
    }

    /// Offers `value` to the reader as `make(&value, taken_back)`,
    /// replacing any value it has not taken yet: `taken_back` is that value,
    /// which `make` may reuse. Returns whether the value was put in the
    /// channel (it is not when the reader already has an equal value).
    pub(crate) fn offer_as(
        &mut self,
        value: Arc<K>,
        make: impl FnOnce(&K, Option<T>) -> T,
    ) -> bool {
        if same(self.pending.as_ref(), &value) && !self.rx.is_empty() {
            return false; // the same value is still waiting
        }
        let taken_back = match self.rx.try_recv() {
            // Taken back before the reader saw it.
            Ok(old) => {
                self.pending = None;
                Some(old)
            }
            // The channel is empty: the reader took what was pending.
            Err(_) => {
                if let Some(taken) = self.pending.take() {
                    self.delivered = Some(taken);
                }
                None
            }
        };
        if same(self.delivered.as_ref(), &value) {
            return false;
        }
        let copy = make(&value, taken_back);
        self.pending = Some(value);
        // The channel is empty and only this side sends, so this succeeds.
        self.tx.try_send(copy).is_ok()
    }
}

impl<T: Clone + PartialEq> Mailbox<T> {
    /// Offers `value` to the reader, replacing any value it has not taken
    /// yet. Returns whether the value was put in the channel (it is not when
    /// the reader already has an equal value).
    pub(crate) fn offer(&mut self, value: impl Into<Arc<T>>) -> bool {
        self.offer_as(value.into(), |value, _| T::clone(value))
    }
}

/// Whether `kept` is `value`: the same allocation, or equal.
fn same<T: PartialEq>(kept: Option<&Arc<T>>, value: &Arc<T>) -> bool {
    kept.is_some_and(|kept| Arc::ptr_eq(kept, value) || **kept == **value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::TryRecvError;

    #[test]
    fn a_value_not_taken_is_handed_to_make_for_reuse() {
        let (mut m, rx) = Mailbox::<Vec<u32>>::new();
        let mut seen = Vec::new();
        let mut make = |v: &Vec<u32>, old: Option<Vec<u32>>| {
            seen.push(old.clone());
            v.clone()
        };
        m.offer_as(Arc::new(vec![1]), &mut make);
        m.offer_as(Arc::new(vec![2]), &mut make);
        assert_eq!(rx.try_recv(), Ok(vec![2]));
        m.offer_as(Arc::new(vec![3]), &mut make);
        assert_eq!(seen, [None, Some(vec![1]), None]);
    }

    #[test]
    fn first_value_is_delivered_even_if_empty() {
        let (mut m, rx) = Mailbox::<Vec<String>>::new();
        assert!(m.offer(vec![]));
        assert_eq!(rx.try_recv(), Ok(vec![]));
    }

    #[test]
    fn equal_values_are_not_repeated() {
        let (mut m, rx) = Mailbox::new();
        assert!(m.offer(1));
        assert!(!m.offer(1), "still pending");
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(!m.offer(1), "reader already has it");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert!(m.offer(2));
        assert_eq!(rx.try_recv(), Ok(2));
    }

    #[test]
    fn a_slow_reader_finds_only_the_newest() {
        let (mut m, rx) = Mailbox::new();
        for i in 0..1000 {
            assert!(m.offer(i));
        }
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.try_recv(), Ok(999));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_value_the_reader_has_is_not_resent_after_a_displaced_one() {
        // Reader took A; B and then A again arrive before it looks: it must
        // not be handed A a second time.
        let (mut m, rx) = Mailbox::new();
        m.offer('a');
        assert_eq!(rx.try_recv(), Ok('a'));
        assert!(m.offer('b'));
        assert!(!m.offer('a'));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        // But C after that is delivered, and then A is news again.
        assert!(m.offer('c'));
        assert_eq!(rx.try_recv(), Ok('c'));
        assert!(m.offer('a'));
        assert_eq!(rx.try_recv(), Ok('a'));
    }

    #[test]
    fn dropping_the_mailbox_disconnects_after_the_pending_value() {
        let (mut m, rx) = Mailbox::new();
        m.offer(5);
        drop(m);
        assert_eq!(rx.recv(), Ok(5));
        assert!(rx.recv().is_err());
        let collected: Vec<i32> = rx.iter().collect();
        assert!(collected.is_empty());
    }

    #[test]
    fn the_sender_never_blocks_with_a_concurrent_reader() {
        let (mut m, rx) = Mailbox::new();
        let reader = std::thread::spawn(move || {
            let mut last = -1;
            for v in rx.iter() {
                assert!(v > last, "values arrive in order, never repeated");
                last = v;
            }
            last
        });
        for i in 0..100_000 {
            m.offer(i);
        }
        drop(m);
        assert_eq!(reader.join().unwrap(), 99_999, "the newest always arrives");
    }
}

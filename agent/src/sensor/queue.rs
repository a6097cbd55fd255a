//! The bounded queue of record batches from the reader to the processor.
//!
//! A mutex and two condition variables, on purpose: a waiting side sleeps in
//! the kernel at once. Channels that spin and `sched_yield` before sleeping
//! (crossbeam, std's mpsc) cost the processor a few context switches per
//! batch, each several µs on a VM, for nothing: batches come every few ms.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A bounded multi-producer, single-consumer queue that blocks without
/// spinning. Bounded by the total weight of its items (records, for batches
/// of records: a batch's size varies with the event rate).
pub struct Queue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    /// Sum of the weights of `items`.
    weight: usize,
    closed: bool,
    /// The consumer sleeps: a push must wake it (no futex call otherwise).
    consumer_waits: bool,
    /// Producers sleeping on a full queue.
    producers_wait: usize,
}

impl<T> Queue<T> {
    /// An empty queue holding items of at most `capacity` weight in all
    /// (one item is always taken, however heavy).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                weight: 0,
                closed: false,
                consumer_waits: false,
                producers_wait: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // a panic elsewhere while holding the lock leaves a queue that is still consistent
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `item` of `weight`, waiting while the queue has no room for it.
    /// Gives it back if the queue is closed.
    pub fn push(&self, item: T, weight: usize) -> Result<(), T> {
        let mut s = self.lock();
        while !s.items.is_empty() && s.weight + weight > self.capacity && !s.closed {
            s.producers_wait += 1;
            s = self.not_full.wait(s).unwrap_or_else(|e| e.into_inner());
            s.producers_wait -= 1;
        }
        if s.closed {
            return Err(item);
        }
        s.items.push_back((item, weight));
        s.weight += weight;
        let wake = s.consumer_waits;
        drop(s);
        if wake {
            self.not_empty.notify_one();
        }
        Ok(())
    }

    /// The oldest item, waiting while the queue is empty; None once it is
    /// closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some((item, weight)) = s.items.pop_front() {
                s.weight -= weight;
                let wake = s.producers_wait > 0;
                drop(s);
                if wake {
                    self.not_full.notify_all();
                }
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s.consumer_waits = true;
            s = self.not_empty.wait(s).unwrap_or_else(|e| e.into_inner());
            s.consumer_waits = false;
        }
    }

    /// No more pushes: `pop` returns what is left, then None.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_come_out_in_order_and_close_drains() {
        let q = Arc::new(Queue::new(4));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u32 {
                    q.push(i, 1).unwrap();
                }
                q.close();
            })
        };
        let mut got = Vec::new();
        while let Some(i) = q.pop() {
            got.push(i);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
        assert_eq!(q.push(1, 1), Err(1), "closed: the item comes back");
    }

    #[test]
    fn a_full_queue_blocks_the_producer_until_the_consumer_takes() {
        let q = Arc::new(Queue::new(10));
        q.push(1, 4).unwrap();
        q.push(2, 6).unwrap();
        let pushed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t = {
            let (q, pushed) = (q.clone(), pushed.clone());
            std::thread::spawn(move || {
                q.push(3, 3).unwrap();
                pushed.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!pushed.load(std::sync::atomic::Ordering::SeqCst), "the third push waits: 13 > 10");
        assert_eq!(q.pop(), Some(1));
        t.join().unwrap();
        assert!(pushed.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!((q.pop(), q.pop()), (Some(2), Some(3)));
        q.push(4, 50).unwrap();
        assert_eq!(q.pop(), Some(4), "an item heavier than the capacity still passes, alone");
    }
}

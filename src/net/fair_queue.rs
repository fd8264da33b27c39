//! A bounded work queue that is fair between keys (client addresses): each key has its own
//! short line, capped, and the lines are served round-robin. A flood from one address fills
//! only its own line, so a request from anyone else waits behind at most one request per
//! other address, never behind the flood.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Why a push was refused; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This key already has its share of the queue waiting.
    Key,
    /// The whole queue is full.
    Total,
}

struct State<K, T> {
    lines: HashMap<K, VecDeque<T>>,
    /// Keys with something waiting, in serving order (each key at most once).
    turns: VecDeque<K>,
    len: usize,
    closed: bool,
}

struct Shared<K, T> {
    state: Mutex<State<K, T>>,
    ready: Condvar,
    per_key: usize,
    total: usize,
}

impl<K, T> Shared<K, T> {
    fn lock(&self) -> MutexGuard<'_, State<K, T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pushing side. Cloneable; when the last clone is dropped the queue closes, and
/// [`FairReceiver::pop`] returns `None` once what is queued has been taken.
pub struct FairSender<K, T> {
    shared: Arc<Shared<K, T>>,
    senders: Arc<()>,
}

/// The serving side (any number of workers may share it).
pub struct FairReceiver<K, T> {
    shared: Arc<Shared<K, T>>,
}

impl<K, T> Clone for FairReceiver<K, T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, T> Clone for FairSender<K, T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            senders: Arc::clone(&self.senders),
        }
    }
}

impl<K, T> Drop for FairSender<K, T> {
    fn drop(&mut self) {
        if Arc::strong_count(&self.senders) == 1 {
            self.shared.lock().closed = true;
            self.shared.ready.notify_all();
        }
    }
}

/// A queue holding at most `per_key` items per key and `total` in all.
pub fn fair_queue<K: Eq + Hash + Clone, T>(
    per_key: usize,
    total: usize,
) -> (FairSender<K, T>, FairReceiver<K, T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            lines: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
            closed: false,
        }),
        ready: Condvar::new(),
        per_key,
        total,
    });
    let sender = FairSender {
        shared: Arc::clone(&shared),
        senders: Arc::new(()),
    };
    (sender, FairReceiver { shared })
}

impl<K: Eq + Hash + Clone, T> FairSender<K, T> {
    /// Queues `item` in `key`'s line without waiting; refused when that line or the whole
    /// queue is full. Returns how many waiting items will be served before it.
    pub fn try_push(&self, key: K, item: T) -> Result<usize, Full> {
        let mut state = self.shared.lock();
        let waiting = state.lines.get(&key).map_or(0, VecDeque::len);
        if waiting >= self.shared.per_key {
            return Err(Full::Key);
        }
        if state.len >= self.shared.total {
            return Err(Full::Total);
        }
        if waiting == 0 {
            state.turns.push_back(key.clone());
        }
        // Served in rounds, one item per key per round in turn order: before the new item
        // (round `waiting` of its key) come every other key's first `waiting` items, the keys
        // ahead of it in turn order with an item in that round, and its own earlier items.
        let mut ahead = waiting;
        let mut before_key = true;
        for other in &state.turns {
            if *other == key {
                before_key = false;
                continue;
            }
            let len = state.lines.get(other).map_or(0, VecDeque::len);
            ahead += len.min(waiting) + usize::from(before_key && len > waiting);
        }
        state.lines.entry(key).or_default().push_back(item);
        state.len += 1;
        drop(state);
        self.shared.ready.notify_one();
        Ok(ahead)
    }

    /// A view of the queue for telling waiting items their place; it does not keep the queue
    /// open.
    pub fn watcher(&self) -> FairWatcher<K, T> {
        FairWatcher {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Looks at what waits, in serving order, without taking anything.
pub struct FairWatcher<K, T> {
    shared: Arc<Shared<K, T>>,
}

impl<K: Eq + Hash + Clone, T> FairWatcher<K, T> {
    /// Calls `visit` with each waiting item and how many will be served before it, in the
    /// order they will be served (as of now: a new key joins the end of the turns). `false`
    /// once every sender is gone.
    pub fn visit_in_serving_order(&self, mut visit: impl FnMut(usize, &T)) -> bool {
        let state = self.shared.lock();
        let mut lines: Vec<&VecDeque<T>> = state
            .turns
            .iter()
            .filter_map(|key| state.lines.get(key))
            .collect();
        let (mut ahead, mut round) = (0, 0);
        while !lines.is_empty() {
            lines.retain(|line| match line.get(round) {
                Some(item) => {
                    visit(ahead, item);
                    ahead += 1;
                    true
                }
                None => false,
            });
            round += 1;
        }
        !state.closed
    }
}

impl<K: Eq + Hash + Clone, T> FairReceiver<K, T> {
    /// Takes the next item, the keys taking turns; waits while the queue is empty. `None`
    /// once the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut state = self.shared.lock();
        loop {
            if let Some(key) = state.turns.pop_front() {
                let Some(line) = state.lines.get_mut(&key) else {
                    continue; // a key takes a turn only while it has a line
                };
                let item = line.pop_front();
                let more = !line.is_empty();
                if more {
                    state.turns.push_back(key);
                } else {
                    state.lines.remove(&key);
                }
                if item.is_some() {
                    state.len -= 1;
                    return item;
                }
                continue;
            }
            if state.closed {
                return None;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_flood_from_one_address_leaves_room_for_another_and_is_served_in_turn() {
        let (tx, rx) = fair_queue::<IpAddr, String>(4, 64);
        let mut refused = 0;
        for n in 0..100 {
            if tx.try_push(ip(1), format!("flood {n}")) == Err(Full::Key) {
                refused += 1;
            }
        }
        assert_eq!(refused, 96, "the flooding address holds only its share");
        tx.try_push(ip(2), "login".into())
            .expect("another address still gets in");
        // Served round-robin: the other address's request comes second, not after the flood.
        assert_eq!(rx.pop().as_deref(), Some("flood 0"));
        assert_eq!(rx.pop().as_deref(), Some("login"));
        assert_eq!(rx.pop().as_deref(), Some("flood 1"));
    }

    #[test]
    fn the_total_stays_bounded_however_many_addresses_push() {
        let (tx, rx) = fair_queue::<IpAddr, u32>(4, 8);
        for n in 0..8 {
            tx.try_push(ip(u8::try_from(n).unwrap()), n).unwrap();
        }
        assert_eq!(tx.try_push(ip(200), 8), Err(Full::Total));
        assert_eq!(rx.pop(), Some(0));
        tx.try_push(ip(200), 8)
            .expect("room again once one was taken");
    }

    #[test]
    fn turns_rotate_between_addresses_in_arrival_order() {
        let (tx, rx) = fair_queue::<IpAddr, (u8, u32)>(3, 64);
        for n in 0..3 {
            tx.try_push(ip(1), (1, n)).unwrap();
        }
        tx.try_push(ip(2), (2, 0)).unwrap();
        tx.try_push(ip(3), (3, 0)).unwrap();
        tx.try_push(ip(3), (3, 1)).unwrap();
        let order: Vec<_> = (0..6).map(|_| rx.pop().unwrap()).collect();
        assert_eq!(
            order,
            [(1, 0), (2, 0), (3, 0), (1, 1), (3, 1), (1, 2)],
            "one from each address in turn"
        );
    }

    #[test]
    fn each_item_is_told_its_place_in_serving_order() {
        let (tx, rx) = fair_queue::<IpAddr, (u8, u32)>(3, 64);
        let mut told = Vec::new();
        for (key, n) in [(1, 0), (1, 1), (1, 2), (2, 0), (3, 0), (3, 1)] {
            told.push(((key, n), tx.try_push(ip(key), (key, n)).unwrap()));
        }
        // Served (1,0) (2,0) (3,0) (1,1) (3,1) (1,2): each push saw the items then waiting
        // that are served before it.
        assert_eq!(
            told,
            [
                ((1, 0), 0),
                ((1, 1), 1),
                ((1, 2), 2),
                ((2, 0), 1),
                ((3, 0), 2),
                ((3, 1), 4)
            ]
        );
        let mut places = Vec::new();
        assert!(
            tx.watcher()
                .visit_in_serving_order(|ahead, item| places.push((*item, ahead)))
        );
        let served: Vec<_> = (0..6).map(|_| rx.pop().unwrap()).collect();
        let expected: Vec<_> = served
            .iter()
            .enumerate()
            .map(|(n, item)| (*item, n))
            .collect();
        assert_eq!(places, expected, "the watcher sees the order pop serves");
        let watcher = tx.watcher();
        drop(tx);
        assert!(
            !watcher.visit_in_serving_order(|_, _| {}),
            "closed once senders are gone"
        );
    }

    #[test]
    fn workers_stop_once_every_sender_is_gone_and_the_queue_is_drained() {
        let (tx, rx) = fair_queue::<IpAddr, u32>(4, 8);
        let second = tx.clone();
        tx.try_push(ip(1), 7).unwrap();
        drop(tx);
        let worker = {
            let rx = rx.clone();
            std::thread::spawn(move || std::iter::from_fn(|| rx.pop()).collect::<Vec<_>>())
        };
        second.try_push(ip(1), 8).unwrap();
        drop(second);
        assert_eq!(worker.join().unwrap(), [7, 8]);
    }
}

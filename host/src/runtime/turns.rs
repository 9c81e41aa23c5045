//! Turns: the order in which an app's actor takes the events it has been
//! sent. Each sender (a connection, or one HTTP request) has its own lane,
//! kept in arrival order, and the lanes take turns, one event each. A
//! client that has a backlog queued gets one event handled per round, so a
//! neighbour's single message waits behind at most one event of each busy
//! lane, never behind the whole backlog.
//!
//! Pure: no clocks, no channels, so its fairness is tested on its own.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Events in lanes that take turns.
#[derive(Debug)]
pub(crate) struct Turns<K, T> {
    /// The events waiting, per lane, in arrival order.
    lanes: HashMap<K, VecDeque<T>>,
    /// The lanes that have events waiting, in the order they get a turn.
    order: VecDeque<K>,
    /// How many events wait, across all lanes.
    len: usize,
}

impl<K: Hash + Eq + Clone, T> Default for Turns<K, T> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, T> Turns<K, T> {
    /// Queues `event` at the end of `lane`; a lane that had nothing waiting
    /// joins the end of the round.
    pub(crate) fn push(&mut self, lane: K, event: T) {
        let waiting = self.lanes.entry(lane.clone()).or_default();
        if waiting.is_empty() {
            self.order.push_back(lane);
        }
        waiting.push_back(event);
        self.len += 1;
    }

    /// The next event: the oldest of the lane whose turn it is. That lane
    /// goes to the back of the round if it has more.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let lane = self.order.pop_front()?;
        let waiting = self.lanes.get_mut(&lane)?;
        let event = waiting.pop_front();
        if waiting.is_empty() {
            self.lanes.remove(&lane);
        } else {
            self.order.push_back(lane);
        }
        self.len -= 1;
        event
    }

    /// How many events wait.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(turns: &mut Turns<&'static str, u32>) -> Vec<u32> {
        std::iter::from_fn(|| turns.pop()).collect()
    }

    #[test]
    fn one_lane_keeps_arrival_order() {
        let mut turns = Turns::default();
        for n in 0..5 {
            turns.push("a", n);
        }
        assert_eq!(turns.len(), 5);
        assert_eq!(drain(&mut turns), [0, 1, 2, 3, 4]);
        assert!(turns.is_empty());
    }

    #[test]
    fn a_backlog_does_not_delay_a_neighbour() {
        let mut turns = Turns::default();
        for n in 0..32 {
            turns.push("flood", n);
        }
        turns.push("bystander", 100);
        // The flood's first event was first; the bystander's comes next.
        assert_eq!(turns.pop(), Some(0));
        assert_eq!(turns.pop(), Some(100));
        assert_eq!(drain(&mut turns), (1..32).collect::<Vec<_>>());
    }

    #[test]
    fn busy_lanes_alternate_and_each_keeps_its_order() {
        let mut turns = Turns::default();
        for n in 0..3 {
            turns.push("a", n);
            turns.push("b", 10 + n);
        }
        turns.push("c", 20);
        assert_eq!(drain(&mut turns), [0, 10, 20, 1, 11, 2, 12]);
    }

    #[test]
    fn a_lane_that_empties_rejoins_at_the_back() {
        let mut turns = Turns::default();
        turns.push("a", 1);
        turns.push("b", 2);
        turns.push("b", 3);
        assert_eq!(turns.pop(), Some(1));
        turns.push("a", 4);
        assert_eq!(drain(&mut turns), [2, 4, 3]);
    }
}

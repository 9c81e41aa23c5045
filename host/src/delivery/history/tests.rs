//! The rings: numbering, limits, recovery and epochs.

use super::*;

fn history(app_bytes: usize) -> History {
    let history = History::new(
        "abc",
        HistoryLimits {
            max_messages: 100,
            app_bytes,
        },
    );
    history.keep_for(
        "chat",
        Some(Arc::new(|path: &str| {
            path.starts_with("/kept/").then_some(HistoryPolicy {
                max_messages: 3,
                max_age: Some(Duration::from_secs(10)),
            })
        })),
    );
    history
}

fn keep(history: &History, path: &str, text: &str, now: Instant) -> Option<u64> {
    history.record(
        &Room::new("chat", path),
        &Message::text(text),
        None,
        now,
        |k| k.offset,
    )
}

/// Where a client at `offset` of `epoch` had got to.
fn at(epoch: &str, offset: u64) -> Position {
    Position {
        epoch: epoch.to_string(),
        offset,
    }
}

/// What connection `me` of `room` at `from` would be sent.
fn recover(h: &History, room: &Room, from: &Position, now: Instant) -> Recovery {
    h.recover(room, "me", from, now, |r| r)
}

/// The epoch of `room` now, if it keeps history.
fn epoch(h: &History, room: &Room, now: Instant) -> Option<String> {
    recover(h, room, &at("unknown", 0), now)
        .epoch
        .map(|e| e.to_string())
}

fn texts(recovery: &Recovery) -> Vec<String> {
    recovery
        .missed
        .iter()
        .map(|k| k.frame.to_text().unwrap().to_string())
        .collect()
}

#[test]
fn only_rooms_the_rule_names_keep_history_and_offsets_count_from_one() {
    let h = history(1 << 20);
    let now = Instant::now();
    assert_eq!(keep(&h, "/other/a", "x", now), None);
    assert_eq!(keep(&h, "/kept/a", "one", now), Some(1));
    assert_eq!(keep(&h, "/kept/a", "two", now), Some(2));
    assert_eq!(keep(&h, "/kept/b", "elsewhere", now), Some(1));
}

#[test]
fn a_client_gets_what_it_missed_once_and_learns_when_it_is_not_all() {
    let h = history(1 << 20);
    let now = Instant::now();
    for text in ["1", "2", "3", "4", "5"] {
        keep(&h, "/kept/a", text, now);
    }
    let room = Room::new("chat", "/kept/a");
    let epoch = epoch(&h, &room, now).unwrap();
    let from = |offset| at(&epoch, offset);
    // Three kept (3, 4, 5): from 2 on, nothing is missing.
    let r = recover(&h, &room, &from(3), now);
    assert_eq!(
        (texts(&r), r.complete),
        (vec!["4".into(), "5".into()], true)
    );
    let r = recover(&h, &room, &from(2), now);
    assert_eq!((texts(&r).len(), r.complete), (3, true));
    // From 1, message 2 is gone.
    let r = recover(&h, &room, &from(1), now);
    assert_eq!((texts(&r).len(), r.complete), (3, false));
    // Up to date.
    let r = recover(&h, &room, &from(5), now);
    assert!(r.missed.is_empty() && r.complete);
    // Another epoch, or a position from the future: nothing, incomplete.
    assert!(!recover(&h, &room, &at("abc.99", 1), now).complete);
    assert!(!recover(&h, &room, &from(6), now).complete);
}

#[test]
fn a_message_kept_without_a_connection_is_not_replayed_to_it() {
    let h = history(1 << 20);
    let now = Instant::now();
    let room = Room::new("chat", "/kept/a");
    h.record(&room, &Message::text("joined"), Some("me"), now, |_| ());
    let epoch = epoch(&h, &room, now).unwrap();
    let from = at(&epoch, 0);
    assert!(recover(&h, &room, &from, now).missed.is_empty());
    assert_eq!(
        texts(&h.recover(&room, "you", &from, now, |r| r)),
        vec!["joined".to_string()]
    );
}

#[test]
fn an_app_reads_the_newest_messages_after_an_offset() {
    let h = history(1 << 20);
    let now = Instant::now();
    for text in ["1", "2", "3", "4"] {
        keep(&h, "/kept/a", text, now);
    }
    let room = Room::new("chat", "/kept/a");
    let offsets = |since, limit| -> Vec<u64> {
        h.read(&room, since, limit, now)
            .iter()
            .map(|k| k.offset)
            .collect()
    };
    // Three kept: 2, 3, 4.
    assert_eq!(offsets(0, 10), vec![2, 3, 4]);
    assert_eq!(offsets(0, 2), vec![3, 4]);
    assert_eq!(offsets(3, 10), vec![4]);
    assert!(offsets(4, 10).is_empty());
    assert!(
        h.read(&Room::new("chat", "/kept/none"), 0, 10, now)
            .is_empty()
    );
}

#[test]
fn old_messages_are_dropped_by_age() {
    let h = history(1 << 20);
    let start = Instant::now();
    keep(&h, "/kept/a", "old", start);
    keep(&h, "/kept/a", "new", start + Duration::from_secs(8));
    let room = Room::new("chat", "/kept/a");
    let later = start + Duration::from_secs(12);
    let epoch = epoch(&h, &room, later).unwrap();
    let r = recover(&h, &room, &at(&epoch, 0), later);
    assert_eq!((texts(&r), r.complete), (vec!["new".to_string()], false));
}

#[test]
fn an_app_over_its_budget_loses_its_oldest_messages_first_in_any_room() {
    // Room for two entries of one byte.
    let h = history(2 * (1 + ENTRY_OVERHEAD));
    let now = Instant::now();
    keep(&h, "/kept/a", "a", now);
    keep(&h, "/kept/b", "b", now);
    keep(&h, "/kept/b", "c", now);
    // Room a lost its only message and with it its epoch.
    let a = recover(&h, &Room::new("chat", "/kept/a"), &at("abc.1", 0), now);
    assert!(a.epoch.is_none());
    let b = Room::new("chat", "/kept/b");
    let epoch = epoch(&h, &b, now).unwrap();
    let r = recover(&h, &b, &at(&epoch, 0), now);
    assert_eq!(texts(&r), vec!["b".to_string(), "c".to_string()]);
    // A new message in room a starts a new epoch.
    keep(&h, "/kept/a", "d", now);
    let a = recover(&h, &Room::new("chat", "/kept/a"), &at("abc.1", 0), now);
    assert_ne!(a.epoch.as_deref(), Some("abc.1"));
    assert!(!a.complete);
}

#[test]
fn a_new_rule_applies_to_rooms_already_kept() {
    let h = history(1 << 20);
    let now = Instant::now();
    for text in ["1", "2", "3"] {
        keep(&h, "/kept/a", text, now);
        keep(&h, "/kept/b", text, now);
    }
    // The new version keeps one message on /kept/a and nothing else.
    h.keep_for(
        "chat",
        Some(Arc::new(|path: &str| {
            (path == "/kept/a").then_some(HistoryPolicy {
                max_messages: 1,
                max_age: None,
            })
        })),
    );
    let a = h.read(&Room::new("chat", "/kept/a"), 0, 10, now);
    assert_eq!(a.iter().map(|k| k.offset).collect::<Vec<_>>(), vec![3]);
    assert!(h.read(&Room::new("chat", "/kept/b"), 0, 10, now).is_empty());
    assert_eq!(keep(&h, "/kept/b", "4", now), None);
}

#[test]
fn forgetting_an_app_drops_its_rooms() {
    let h = history(1 << 20);
    let now = Instant::now();
    keep(&h, "/kept/a", "a", now);
    h.forget("chat");
    assert_eq!(keep(&h, "/kept/a", "b", now), None);
    let r = recover(&h, &Room::new("chat", "/kept/a"), &at("abc.1", 0), now);
    assert!(r.epoch.is_none());
}

#[test]
fn positions_are_read_from_event_ids() {
    assert_eq!(Position::parse("a1b2.3-42"), Some(at("a1b2.3", 42)));
    for bad in ["", "-1", "abc", "abc-", "abc-x", "a b-1", "a/b-1"] {
        assert_eq!(Position::parse(bad), None, "{bad:?}");
    }
}

/// Keeps `text` in `path` as the store numbered it.
fn heard(h: &History, path: &str, epoch: &str, offset: u64, text: &str) -> Numbered<u64> {
    h.record_numbered(
        &Room::new("chat", path),
        epoch,
        offset,
        &Message::text(text),
        None,
        Instant::now(),
        |k| k.offset,
    )
}

fn tail(epoch: &str, newest: u64, offsets: std::ops::RangeInclusive<u64>) -> Tail {
    Tail {
        epoch: Some(epoch.into()),
        newest,
        messages: offsets
            .map(|offset| StoredMessage {
                offset,
                frame: Message::text(format!("m{offset}")),
                excluded: None,
                age: Duration::ZERO,
            })
            .collect(),
    }
}

#[test]
fn a_copy_of_the_store_keeps_its_numbering_and_skips_what_it_has() {
    let h = history(1 << 20);
    let room = Room::new("chat", "/kept/a");
    assert_eq!(heard(&h, "/other", "s1", 1, "x"), Numbered::NotKept);
    assert_eq!(heard(&h, "/kept/a", "s1", 1, "one"), Numbered::Kept(1));
    assert!(h.is_synced(&room), "a copy from offset 1 is whole");
    assert_eq!(heard(&h, "/kept/a", "s1", 2, "two"), Numbered::Kept(2));
    assert_eq!(heard(&h, "/kept/a", "s1", 2, "two"), Numbered::Again);
    let r = recover(&h, &room, &at("s1", 1), Instant::now());
    assert_eq!((texts(&r), r.complete), (vec!["two".to_string()], true));
}

#[test]
fn a_copy_that_missed_offsets_cannot_vouch_for_a_recovery_until_primed() {
    let h = history(1 << 20);
    let room = Room::new("chat", "/kept/a");
    heard(&h, "/kept/a", "s1", 4, "four");
    assert!(!h.is_synced(&room), "joined mid-epoch");
    assert!(!recover(&h, &room, &at("s1", 3), Instant::now()).complete);
    // The store's tail fills it; what was heard since stays after it.
    heard(&h, "/kept/a", "s1", 5, "five");
    h.prime(&room, tail("s1", 4, 2..=4), Instant::now());
    assert!(h.is_synced(&room));
    let r = recover(&h, &room, &at("s1", 2), Instant::now());
    assert_eq!(texts(&r), ["m3", "m4", "five"]);
    assert!(r.complete);
    assert_eq!(heard(&h, "/kept/a", "s1", 6, "six"), Numbered::Kept(6));
    // A gap: the copy no longer vouches.
    heard(&h, "/kept/a", "s1", 9, "nine");
    assert!(!recover(&h, &room, &at("s1", 6), Instant::now()).complete);
    // Nobody listens here any more: the copy may fall behind.
    h.prime(&room, tail("s1", 9, 7..=9), Instant::now());
    h.detach(&room);
    assert!(!h.is_synced(&room));
}

#[test]
fn without_the_store_a_room_it_numbered_starts_an_epoch_of_this_process() {
    let h = history(1 << 20);
    let room = Room::new("chat", "/kept/a");
    heard(&h, "/kept/a", "s1", 1, "from the store");
    assert_eq!(keep(&h, "/kept/a", "local", Instant::now()), Some(1));
    let epoch = epoch(&h, &room, Instant::now()).unwrap();
    assert_ne!(epoch, "s1");
    assert!(!recover(&h, &room, &at("s1", 1), Instant::now()).complete);
    // And when the store comes back, its epoch takes over again.
    heard(&h, "/kept/a", "s1", 2, "store again");
    assert_eq!(epoch_of(&h, &room), "s1");
    // A store that lost the room: no copy either.
    h.prime(
        &room,
        Tail {
            epoch: None,
            newest: 0,
            messages: Vec::new(),
        },
        Instant::now(),
    );
    assert_eq!(
        super::History::read(&h, &room, 0, 10, Instant::now()).len(),
        0
    );
}

fn epoch_of(h: &History, room: &Room) -> String {
    epoch(h, room, Instant::now()).unwrap()
}

//! WebSocket close codes (RFC 6455 §7.4.1) and reasons, named once for the
//! host: the edge closes with them, delivery evicts with them, and apps may
//! send only the codes [`sendable`] allows.

/// The server is going away: shutdown, the app unloaded, its route removed.
pub(crate) const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub(crate) const PROTOCOL_ERROR: u16 = 1002;
/// The peer sent a close frame without a code (never sent on the wire).
pub(crate) const NO_STATUS: u16 = 1005;
/// The peer vanished without a close frame (never sent on the wire).
pub(crate) const ABNORMAL: u16 = 1006;
/// A text message was not UTF-8.
pub(crate) const INVALID_DATA: u16 = 1007;
/// The connection may no longer stay: rate, token expiry, slow consumer.
pub(crate) const POLICY_VIOLATION: u16 = 1008;
/// A message or frame over the size limit.
pub(crate) const TOO_BIG: u16 = 1009;
/// The host or the app failed.
pub(crate) const INTERNAL_ERROR: u16 = 1011;

/// Longest close reason: a close frame's payload is at most 125 bytes, two
/// of them the code.
pub(crate) const MAX_REASON_BYTES: usize = 123;

/// Close codes an application may put in a close frame (RFC 6455 §7.4).
pub(crate) fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// `reason` cut to fit a close frame, on a character boundary.
pub(crate) fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert_eq!(cut.len() % 2, 0);
        assert_eq!(truncate_reason("bye"), "bye");
    }

    #[test]
    fn apps_send_only_codes_meant_for_the_wire() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(sendable(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000] {
            assert!(!sendable(bad), "{bad}");
        }
    }
}

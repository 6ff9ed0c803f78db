//! Proves which outbox frames the relay has read, from the pongs of the open socket.
//!
//! The relay confirms nothing an agent sends. But one WebSocket carries frames and pings in
//! order, and a peer answers a ping only after reading everything before it: a pong to a ping
//! sent after a frame proves the relay read that frame. Pongs answer pings in order, and a peer
//! may answer only the latest of several pings, so each pong is counted as the answer to the
//! oldest ping still unanswered: that can prove less than the truth, never more. What is not
//! proven when the socket goes is sent again on the next one.

use std::collections::BTreeMap;

/// Outbox entries are bounded: a send outside a handler beyond this many unconfirmed entries is
/// refused ([`super::SendError::OutboxFull`]). A relay that reads frames drains the outbox one
/// pong later, so only a relay that stops answering lets it fill.
pub const MAX_OUTBOX: usize = 1_000;

/// The pings of the open socket and the outbox entries waiting for one of them.
#[derive(Debug, Default)]
pub(super) struct Proofs {
    /// Pings sent on this socket.
    pings_sent: u64,
    /// Pongs heard on this socket (never more than the pings sent).
    pongs_heard: u64,
    /// Entries sent on this socket (by seq), with the number of the first ping sent after
    /// them: its pong proves them read.
    awaiting: BTreeMap<u64, u64>,
}

impl Proofs {
    /// A socket opened or went: nothing sent before counts on the next one.
    pub(super) fn reset(&mut self) {
        *self = Proofs::default();
    }

    /// Outbox entry `seq` was just written on the socket; the next ping proves it.
    pub(super) fn sent(&mut self, seq: u64) {
        self.awaiting.insert(seq, self.pings_sent + 1);
    }

    /// A ping was written on the socket.
    pub(super) fn pinged(&mut self) {
        self.pings_sent += 1;
    }

    /// A pong arrived: the entries it proves read, in seq order.
    pub(super) fn pong(&mut self) -> Vec<u64> {
        if self.pongs_heard >= self.pings_sent {
            // Unsolicited (RFC 6455 allows it): it answers no ping of ours.
            return Vec::new();
        }
        self.pongs_heard += 1;
        let heard = self.pongs_heard;
        let proven: Vec<u64> = self.awaiting.iter().filter(|(_, ping)| **ping <= heard).map(|(seq, _)| *seq).collect();
        for seq in &proven {
            self.awaiting.remove(seq);
        }
        proven
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pong_proves_only_what_was_sent_before_its_ping() {
        let mut proofs = Proofs::default();
        assert!(proofs.pong().is_empty(), "an unsolicited pong proves nothing");
        proofs.pinged(); // a keepalive ping, before any frame
        proofs.sent(1);
        proofs.pinged();
        proofs.sent(2);
        proofs.pinged();
        assert!(proofs.pong().is_empty(), "the keepalive's pong");
        assert_eq!(proofs.pong(), vec![1]);
        assert_eq!(proofs.pong(), vec![2]);
        assert!(proofs.pong().is_empty(), "more pongs than pings");
        proofs.sent(3);
        proofs.reset();
        proofs.pinged();
        assert!(proofs.pong().is_empty(), "a new socket proves nothing of the old one");
    }
}

//! Which accepted receipts to forget: an index of them oldest first, kept beside the receipts,
//! so that each acceptance costs the receipts it forgets (and a logarithm of those kept), not a
//! sort of every receipt kept.
//!
//! The index holds what the snapshot's receipts hold: it is built from them when the agent
//! starts and follows every change the agent commits ([`Retention::track`]). Times are the
//! caller's and need not be monotonic: the index orders by the stored time, whatever it is, as
//! the sort it replaces did, so a clock that stepped back only makes a receipt look younger.

use crate::Timestamp;
use crate::store::{Receipt, ReceiptState, StoreChanges};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The accepted receipts, ordered by (acceptance time, message id).
#[derive(Debug, Default)]
pub(crate) struct Retention {
    by_age: BTreeSet<(Timestamp, String)>,
}

/// When `receipt` was accepted, if it was.
fn accepted_at(receipt: &Receipt) -> Option<Timestamp> {
    match receipt.state {
        ReceiptState::Accepted { at } => Some(at),
        ReceiptState::Pending { .. } => None,
    }
}

impl Retention {
    /// The index of `receipts` (a snapshot's, at start).
    pub(crate) fn of(receipts: &BTreeMap<String, Receipt>) -> Self {
        let by_age = receipts
            .values()
            .filter_map(|receipt| accepted_at(receipt).map(|at| (at, receipt.message_id.clone())))
            .collect();
        Retention { by_age }
    }

    /// How many accepted receipts are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_age.len()
    }

    /// Follows `changes`, about to be applied to `receipts` (which still hold the state before
    /// them), in [`crate::store::AgentSnapshot::apply`]'s order: puts, then removals.
    pub(crate) fn track(&mut self, receipts: &BTreeMap<String, Receipt>, changes: &StoreChanges) {
        for receipt in &changes.put_receipts {
            if let Some(at) = receipts.get(&receipt.message_id).and_then(accepted_at) {
                self.by_age.remove(&(at, receipt.message_id.clone()));
            }
        }
        // A removal of an id put in the same change removes what was put.
        for id in &changes.remove_receipts {
            if let Some(at) = receipts.get(id).and_then(accepted_at) {
                self.by_age.remove(&(at, id.clone()));
            }
        }
        for receipt in &changes.put_receipts {
            if changes.remove_receipts.contains(&receipt.message_id) {
                continue;
            }
            if let Some(at) = accepted_at(receipt) {
                self.by_age.insert((at, receipt.message_id.clone()));
            }
        }
    }

    /// The accepted receipts older than `retention` at `now`, and the oldest beyond `limit` once
    /// one more is accepted; oldest first. Both sets are a prefix of the age order (an older
    /// receipt is at least as far past `retention`), so the walk stops at the first one kept.
    pub(crate) fn expired(&self, now: Timestamp, limit: usize, retention: Duration) -> Vec<String> {
        let over_limit = (self.by_age.len() + 1).saturating_sub(limit);
        self.by_age
            .iter()
            .enumerate()
            .take_while(|(index, (at, _))| *index < over_limit || now.saturating_since(*at) > retention)
            .map(|(_, (_, id))| id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn receipt(id: &str, accepted: Option<u64>) -> Receipt {
        Receipt {
            message_id: id.to_owned(),
            digest: "d".into(),
            from: "u1".into(),
            conversation_id: "c1".into(),
            from_device_id: None,
            sender_identity: None,
            state: match accepted {
                Some(at) => ReceiptState::Accepted { at: Timestamp::from_millis(at) },
                None => ReceiptState::Pending { text: "t".into() },
            },
        }
    }

    /// The sort the index replaces, as the agent did it before: the reference.
    fn sorted(receipts: &BTreeMap<String, Receipt>, now: Timestamp, limit: usize, retention: Duration) -> Vec<String> {
        let mut accepted: Vec<(Timestamp, &String)> =
            receipts.values().filter_map(|receipt| accepted_at(receipt).map(|at| (at, &receipt.message_id))).collect();
        accepted.sort();
        let over_limit = (accepted.len() + 1).saturating_sub(limit);
        accepted
            .iter()
            .enumerate()
            .filter(|(index, (at, _))| *index < over_limit || now.saturating_since(*at) > retention)
            .map(|(_, (_, id))| (*id).clone())
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Step {
        Pending(u8),
        Accept(u8, u64),
        Remove(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            any::<u8>().prop_map(|id| Step::Pending(id % 40)),
            (any::<u8>(), 0u64..1_000).prop_map(|(id, at)| Step::Accept(id % 40, at)),
            any::<u8>().prop_map(|id| Step::Remove(id % 40)),
        ]
    }

    proptest! {
        /// Whatever the order of changes and however the clock jumps (back included), the index
        /// agrees with sorting every receipt, as the snapshot holds them.
        #[test]
        fn the_index_agrees_with_a_full_sort(
            steps in proptest::collection::vec(step(), 0..120),
            now in 0u64..1_200,
            limit in 1usize..30,
            retention in 0u64..800,
        ) {
            let mut snapshot = crate::store::AgentSnapshot::default();
            let mut retention_index = Retention::of(&snapshot.receipts);
            for step in steps {
                let mut changes = StoreChanges::default();
                match step {
                    Step::Pending(id) => changes.put_receipts.push(receipt(&format!("m{id}"), None)),
                    Step::Accept(id, at) => changes.put_receipts.push(receipt(&format!("m{id}"), Some(at))),
                    Step::Remove(id) => changes.remove_receipts.push(format!("m{id}")),
                }
                retention_index.track(&snapshot.receipts, &changes);
                snapshot.apply(&changes);
            }
            let retention = Duration::from_millis(retention);
            let now = Timestamp::from_millis(now);
            prop_assert_eq!(
                retention_index.expired(now, limit, retention),
                sorted(&snapshot.receipts, now, limit, retention)
            );
            // And an index built from the snapshot (a restart) is the same index.
            prop_assert_eq!(Retention::of(&snapshot.receipts).by_age, retention_index.by_age);
        }
    }

    #[test]
    fn a_put_and_a_removal_of_the_same_id_in_one_change_leave_nothing() {
        let mut receipts = BTreeMap::new();
        receipts.insert("m1".to_owned(), receipt("m1", Some(5)));
        let mut index = Retention::of(&receipts);
        assert_eq!(index.len(), 1);
        let changes = StoreChanges {
            put_receipts: vec![receipt("m1", Some(9))],
            remove_receipts: vec!["m1".into()],
            ..Default::default()
        };
        index.track(&receipts, &changes);
        assert_eq!(index.len(), 0);
    }
}

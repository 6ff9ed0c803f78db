//! The per-epoch symmetric chains that turn epoch secrets into one key per message.
//!
//! Every epoch has a sending and a receiving chain per party (A's send chain is B's receive
//! chain). A chain is stepped with HKDF once per message; the receiver may skip ahead (at most
//! `max_jump` keys at once) and keeps skipped keys for out-of-order messages, but only the
//! `max_ooo_keys` most recent ones. Each key is handed out once. Old epochs are dropped once the
//! send epoch has moved two epochs past them, as upstream does, so late messages from them fail
//! with `EpochOutOfRange`.

use std::collections::{BTreeMap, VecDeque};

use zeroize::Zeroizing;

use crate::kdf;
use crate::{ChainParams, Direction, Error};

/// A 32-byte secret that is wiped on drop.
pub(crate) type Key = Zeroizing<[u8; 32]>;

/// How many epochs before the current send epoch stay receivable.
const EPOCHS_KEPT_BEFORE_SEND: usize = 1;

/// Steps the chain key `next`, whose last key had index `ctr`: returns the new index and its key.
fn step(next: &mut Key, ctr: u32) -> Result<(u32, Key), Error> {
    let ctr = ctr.checked_add(1).ok_or(Error::ChainExhausted)?;
    let mut out = Zeroizing::new([0u8; 64]);
    kdf::chain_next(next, ctr, &mut out);
    next.copy_from_slice(&out[..32]);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&out[32..]);
    Ok((ctr, key))
}

/// What receiving one key changes in a receiving half chain.
#[derive(Clone)]
pub(crate) enum HalfStep {
    /// A stored skipped key is handed out.
    Take(u32),
    /// The chain moves to `ctr`, keeping the keys skipped on the way.
    Advance { ctr: u32, next: Key, skipped: Vec<(u32, Key)> },
}

/// What receiving one key changes in a [`Chain`]: the receiving half of the link at `link`.
#[derive(Clone)]
pub(crate) struct KeyStep {
    link: usize,
    step: HalfStep,
}

/// One direction of one epoch.
#[derive(Clone)]
pub(crate) struct HalfChain {
    /// Index of the last key derived (0 before the first).
    pub(crate) ctr: u32,
    /// The chain key for the next step; `None` once an old send chain has been erased.
    pub(crate) next: Option<Key>,
    /// Skipped keys still available for late messages, by index.
    pub(crate) skipped: BTreeMap<u32, Key>,
}

impl HalfChain {
    fn new(seed: &[u8]) -> HalfChain {
        let mut next = Zeroizing::new([0u8; 32]);
        next.copy_from_slice(seed.get(..32).unwrap_or(&[0u8; 32]));
        HalfChain { ctr: 0, next: Some(next), skipped: BTreeMap::new() }
    }

    /// Steps the chain once: returns (index, key).
    fn step(&mut self) -> Result<(u32, Key), Error> {
        let next = self.next.as_mut().ok_or(Error::ChainNotAvailable)?;
        let (ctr, key) = step(next, self.ctr)?;
        self.ctr = ctr;
        Ok((ctr, key))
    }

    /// The key with index `at`, for a received message, and the change that hands it out;
    /// `self` is left as it is until [`HalfChain::apply`].
    fn prepare(&self, at: u32, params: &ChainParams) -> Result<(Key, HalfStep), Error> {
        let max_ooo = u64::from(params.max_ooo_keys);
        if at > self.ctr {
            if at - self.ctr > params.max_jump {
                return Err(Error::KeyJump(self.ctr, at));
            }
            let mut next = self.next.clone().ok_or(Error::ChainNotAvailable)?;
            let mut ctr = self.ctr;
            let mut skipped = Vec::new();
            // `at` fits a u32, so no step below can overflow the counter.
            while ctr + 1 < at {
                let (index, key) = step(&mut next, ctr)?;
                ctr = index;
                // Keys that would already be too old once we reach `at` are never stored.
                if u64::from(index) + max_ooo >= u64::from(at) {
                    skipped.push((index, key));
                }
            }
            let (ctr, key) = step(&mut next, ctr)?;
            Ok((key, HalfStep::Advance { ctr, next, skipped }))
        } else if at < self.ctr {
            if u64::from(at) + max_ooo < u64::from(self.ctr) {
                return Err(Error::KeyTrimmed(at));
            }
            let key = self.skipped.get(&at).cloned().ok_or(Error::KeyAlreadyRequested(at))?;
            Ok((key, HalfStep::Take(at)))
        } else {
            Err(Error::KeyAlreadyRequested(at))
        }
    }

    /// Applies what [`HalfChain::prepare`] computed from this very state.
    fn apply(&mut self, step: HalfStep, params: &ChainParams) {
        match step {
            HalfStep::Take(at) => {
                self.skipped.remove(&at);
            }
            HalfStep::Advance { ctr, next, skipped } => {
                self.ctr = ctr;
                self.next = Some(next);
                self.skipped.extend(skipped);
                let max_ooo = u64::from(params.max_ooo_keys);
                self.skipped.retain(|&index, _| u64::from(index) + max_ooo >= u64::from(ctr));
            }
        }
    }

    /// How many chain steps [`HalfChain::prepare`] would take for `at` (0 if it derives none).
    fn steps_to(&self, at: u32) -> u32 {
        at.saturating_sub(self.ctr)
    }

    /// Erases the chain key and any stored keys: this chain is done.
    fn erase(&mut self) {
        self.next = None;
        self.skipped.clear();
    }
}

/// Both directions of one epoch.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) send: HalfChain,
    pub(crate) recv: HalfChain,
}

impl Link {
    /// Splits 96 bytes of HKDF output into (root, link) for a party sending in `dir`.
    fn from_okm(okm: &[u8; 96], dir: Direction) -> (Key, Link) {
        let mut root = Zeroizing::new([0u8; 32]);
        root.copy_from_slice(&okm[..32]);
        let a2b = &okm[32..64];
        let b2a = &okm[64..96];
        let (send, recv) = match dir {
            Direction::A2B => (a2b, b2a),
            Direction::B2A => (b2a, a2b),
        };
        (root, Link { send: HalfChain::new(send), recv: HalfChain::new(recv) })
    }
}

/// All chains of a session.
#[derive(Clone)]
pub(crate) struct Chain {
    pub(crate) dir: Direction,
    pub(crate) current_epoch: u64,
    pub(crate) send_epoch: u64,
    /// Links for epochs `current_epoch + 1 - links.len() ..= current_epoch`.
    pub(crate) links: VecDeque<Link>,
    pub(crate) next_root: Key,
    pub(crate) params: ChainParams,
}

impl Chain {
    /// The chains of epoch 0, derived from the session's auth key.
    pub(crate) fn new(auth_key: &[u8], dir: Direction, params: ChainParams) -> Chain {
        let mut okm = Zeroizing::new([0u8; 96]);
        kdf::hkdf(&kdf::ZERO_SALT, auth_key, &[kdf::CHAIN_START], okm.as_mut_slice());
        let (next_root, link) = Link::from_okm(&okm, dir);
        Chain { dir, current_epoch: 0, send_epoch: 0, links: VecDeque::from([link]), next_root, params }
    }

    /// Adds the chains of `epoch`, which must directly follow the current one.
    pub(crate) fn add_epoch(&mut self, epoch: u64, secret: &[u8]) -> Result<(), Error> {
        if self.current_epoch.checked_add(1) != Some(epoch) {
            return Err(Error::InconsistentState);
        }
        let mut okm = Zeroizing::new([0u8; 96]);
        kdf::hkdf(self.next_root.as_slice(), secret, &[kdf::CHAIN_ADD_EPOCH], okm.as_mut_slice());
        let (next_root, link) = Link::from_okm(&okm, self.dir);
        self.next_root = next_root;
        self.current_epoch = epoch;
        self.links.push_back(link);
        Ok(())
    }

    /// Position of `epoch` in `links`.
    fn position(&self, epoch: u64) -> Result<usize, Error> {
        let back = self.current_epoch.checked_sub(epoch).ok_or(Error::EpochOutOfRange(epoch))?;
        let back = usize::try_from(back).map_err(|_| Error::EpochOutOfRange(epoch))?;
        let last = self.links.len().checked_sub(1).ok_or(Error::InconsistentState)?;
        last.checked_sub(back).ok_or(Error::EpochOutOfRange(epoch))
    }

    /// The next sending key of `epoch`: (index, key). Moving to a newer epoch drops the links
    /// older than the one before it and erases the older send chains.
    pub(crate) fn send_key(&mut self, epoch: u64) -> Result<(u32, Key), Error> {
        if epoch < self.send_epoch {
            return Err(Error::SendKeyEpochDecreased(self.send_epoch, epoch));
        }
        let mut pos = self.position(epoch)?;
        if epoch != self.send_epoch {
            self.send_epoch = epoch;
            while pos > EPOCHS_KEPT_BEFORE_SEND {
                self.links.pop_front();
                pos -= 1;
            }
            for link in self.links.iter_mut().take(pos) {
                link.send.erase();
            }
        }
        self.links.get_mut(pos).ok_or(Error::InconsistentState)?.send.step()
    }

    /// The key with index `index` in the receiving chain of `epoch`, and the change that
    /// hands it out; `self` is left as it is until [`Chain::apply`].
    pub(crate) fn prepare_recv_key(&self, epoch: u64, index: u32) -> Result<(Key, KeyStep), Error> {
        let link = self.position(epoch)?;
        let (key, step) = self.links.get(link).ok_or(Error::InconsistentState)?.recv.prepare(index, &self.params)?;
        Ok((key, KeyStep { link, step }))
    }

    /// Applies what [`Chain::prepare_recv_key`] computed from this very chain.
    pub(crate) fn apply(&mut self, step: KeyStep) {
        let params = self.params;
        if let Some(link) = self.links.get_mut(step.link) {
            link.recv.apply(step.step, &params);
        }
    }

    /// The key with index `index` in the receiving chain of `epoch`, handed out at once.
    pub(crate) fn recv_key(&mut self, epoch: u64, index: u32) -> Result<Key, Error> {
        let (key, step) = self.prepare_recv_key(epoch, index)?;
        self.apply(step);
        Ok(key)
    }

    /// How many chain keys receiving key `index` of `epoch` would derive, without deriving
    /// them: 0 when the epoch is not held (receiving it fails first) or the key is at hand.
    pub(crate) fn steps_to(&self, epoch: u64, index: u32) -> u32 {
        match self.position(epoch).ok().and_then(|link| self.links.get(link)) {
            Some(link) => link.recv.steps_to(index),
            // The epoch this message would add starts a fresh chain.
            None if self.current_epoch.checked_add(1) == Some(epoch) => index,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max_jump: u32, max_ooo_keys: u32) -> ChainParams {
        ChainParams { max_jump, max_ooo_keys }
    }

    #[test]
    fn directions_match_across_epochs() {
        let mut a = Chain::new(b"1", Direction::A2B, ChainParams::default());
        let mut b = Chain::new(b"1", Direction::B2A, ChainParams::default());
        let (i, k) = a.send_key(0).unwrap();
        assert_eq!(i, 1);
        assert_eq!(*k, *b.recv_key(0, 1).unwrap());
        let (i, k) = b.send_key(0).unwrap();
        assert_eq!(*k, *a.recv_key(0, i).unwrap());
        a.add_epoch(1, &[2]).unwrap();
        b.add_epoch(1, &[2]).unwrap();
        for _ in 0..9 {
            a.send_key(1).unwrap();
        }
        let (i, k) = a.send_key(1).unwrap();
        assert_eq!(i, 10);
        assert_eq!(*k, *b.recv_key(1, 10).unwrap());
        assert!(matches!(a.send_key(0), Err(Error::SendKeyEpochDecreased(1, 0))));
        assert!(matches!(a.add_epoch(3, &[1]), Err(Error::InconsistentState)));
        assert!(matches!(b.recv_key(2, 1), Err(Error::EpochOutOfRange(2))));
    }

    #[test]
    fn keys_are_single_use_and_old_ones_trimmed() {
        let mut c = Chain::new(b"1", Direction::A2B, params(10, 10));
        c.recv_key(0, 2).unwrap();
        assert!(matches!(c.recv_key(0, 2), Err(Error::KeyAlreadyRequested(2))));
        assert!(matches!(c.recv_key(0, 0), Err(Error::KeyAlreadyRequested(0))));
        assert!(matches!(c.recv_key(0, 13), Err(Error::KeyJump(2, 13))));
        c.recv_key(0, 12).unwrap();
        c.recv_key(0, 3).unwrap();
        assert!(matches!(c.recv_key(0, 1), Err(Error::KeyTrimmed(1))));
        // Only keys within max_ooo_keys of the counter are kept.
        assert!(c.links[0].recv.skipped.keys().all(|&i| i + 10 >= 12));
    }

    #[test]
    fn out_of_order_within_window() {
        let mut a = Chain::new(b"x", Direction::A2B, ChainParams::default());
        let mut b = Chain::new(b"x", Direction::B2A, ChainParams::default());
        let mut keys: Vec<(u32, Key)> = (0..50).map(|_| a.send_key(0).unwrap()).collect();
        keys.reverse();
        keys.swap(3, 30);
        for (i, k) in keys {
            assert_eq!(*k, *b.recv_key(0, i).unwrap());
        }
    }

    #[test]
    fn old_epochs_are_dropped_when_sending_moves_on() {
        let mut a = Chain::new(b"x", Direction::A2B, ChainParams::default());
        for e in 1..=3 {
            a.add_epoch(e, &[e as u8]).unwrap();
        }
        a.send_key(3).unwrap();
        assert_eq!(a.links.len(), 2);
        assert!(a.links[0].send.next.is_none());
        assert!(matches!(a.recv_key(1, 1), Err(Error::EpochOutOfRange(1))));
        a.recv_key(2, 1).unwrap();
    }
}

//! Who may hold a connection slot: the listener's limit and the per-address limit on
//! clients that have not logged in, so a few idle sockets from one place cannot shut
//! everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::throttle::address_key;

/// A listener's limits, shared by its accept loop and the guards it hands out.
pub(crate) struct Admissions {
    slots: Arc<Semaphore>,
    per_address: Option<PerAddress>,
}

struct PerAddress {
    limit: usize,
    /// Loopback peers are not counted (a local relay or webmail is one address for many).
    exempt_loopback: bool,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Why a client was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ListenerFull,
    AddressFull,
}

/// A connection's hold on the listener's limits. Sessions that log in call
/// [`Admission::logged_in`]: a logged-in session no longer counts against its address
/// (its account's own limits bound it), so idle strangers cannot crowd it out.
#[derive(Default)]
pub struct Admission {
    address: Option<AddressSlot>,
}

/// A connection's slot in the listener's limit, held by the accept loop's task for the
/// session's whole life.
pub(crate) type Slot = OwnedSemaphorePermit;

impl Admission {
    /// The client logged in: its address may open another connection in its place.
    pub fn logged_in(&mut self) {
        self.address = None;
    }
}

struct AddressSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl Admissions {
    /// `per_address` 0 means no per-address limit.
    pub(crate) fn new(max: usize, per_address: usize, exempt_loopback: bool) -> Admissions {
        Admissions {
            slots: Arc::new(Semaphore::new(max)),
            per_address: (per_address > 0).then(|| PerAddress {
                limit: per_address,
                exempt_loopback,
                counts: Arc::default(),
            }),
        }
    }

    pub(crate) fn admit(&self, peer: IpAddr) -> Result<(Slot, Admission), Refusal> {
        let address = match &self.per_address {
            Some(p) if !(p.exempt_loopback && peer.to_canonical().is_loopback()) => {
                let key = address_key(peer);
                let mut counts = p.counts.lock().unwrap_or_else(|e| e.into_inner());
                let n = counts.entry(key).or_default();
                if *n >= p.limit {
                    return Err(Refusal::AddressFull);
                }
                *n += 1;
                Some(AddressSlot {
                    counts: p.counts.clone(),
                    key,
                })
            }
            _ => None,
        };
        // On failure the address slot just taken drops with `address` and is given back.
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::ListenerFull)?;
        Ok((slot, Admission { address }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let admissions = Admissions::new(10, 3, false);
        let held: Vec<_> = (0..3)
            .map(|_| admissions.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(
            admissions.admit(ip("192.0.2.1")).err(),
            Some(Refusal::AddressFull)
        );
        // Another address, and another /64, still get in.
        assert!(admissions.admit(ip("192.0.2.2")).is_ok());
        let v6: Vec<_> = (0..3)
            .map(|i| admissions.admit(ip(&format!("2001:db8::{i}"))).unwrap())
            .collect();
        assert_eq!(
            admissions.admit(ip("2001:db8::99")).err(),
            Some(Refusal::AddressFull)
        );
        drop(v6);
        drop(held);
        assert!(admissions.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn a_logged_in_session_gives_its_address_slot_back() {
        let admissions = Admissions::new(10, 1, false);
        let (_slot, mut first) = admissions.admit(ip("192.0.2.1")).unwrap();
        assert!(admissions.admit(ip("192.0.2.1")).is_err());
        first.logged_in();
        assert!(admissions.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn loopback_may_be_exempt_and_the_listener_limit_still_holds() {
        let admissions = Admissions::new(3, 1, true);
        let held: Vec<_> = (0..3)
            .map(|_| admissions.admit(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(
            admissions.admit(ip("192.0.2.1")).err(),
            Some(Refusal::ListenerFull)
        );
        drop(held);
        // A refusal by the listener's limit does not leak the address's slot.
        let _a = admissions.admit(ip("192.0.2.1")).unwrap();
        assert!(admissions.admit(ip("192.0.2.1")).is_err());
    }
}

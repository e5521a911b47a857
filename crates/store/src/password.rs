//! Password hashing with Argon2id (PHC strings, so parameters can change without a migration).

use std::sync::{Condvar, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes computed at once. Each Argon2 run takes 19 MiB, so a burst of logins (ten
/// clients reconnecting after a network blip) must queue rather than add up: two at a
/// time keeps the peak at ~40 MiB and both cores busy.
const CONCURRENT_HASHES: usize = 2;

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// Runs `f` once one of the hashing slots is free.
fn bounded<T>(f: impl FnOnce() -> T) -> T {
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    while *running >= CONCURRENT_HASHES {
        running = FREED.wait(running).unwrap_or_else(|p| p.into_inner());
    }
    *running += 1;
    drop(running);
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            FREED.notify_one();
        }
    }
    let _release = Release;
    f()
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .expect("16 bytes is a valid salt length");
    bounded(|| {
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 with default parameters cannot fail on a generated salt")
            .to_string()
    })
}

pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            bounded(|| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so that a wrong user name
/// costs as much time as a wrong password and does not reveal which accounts exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("tegami-dummy-password"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifies_only_the_right_password() {
        let h = super::hash("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("correct horsE", &h));
        assert!(!super::verify("x", "not a phc string"));
    }
}

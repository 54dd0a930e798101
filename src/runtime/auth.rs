//! Passphrase authentication: a mutual challenge–response over the `Hello`
//! exchange (see [`crate::protocol::message::Hello`]). Each side sends a fresh nonce;
//! each proves it knows the passphrase with an HMAC-SHA256 over both nonces,
//! both peer ids and its role. The passphrase never crosses the wire, a proof
//! is good for one pair of nonces only (no replay), and the role byte stops a
//! proof from being reflected back at its sender.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::protocol::PeerId;
use crate::protocol::message::AUTH_LEN;

/// Which end of a link proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that accepted the connection (proves in its `Hello`).
    Acceptor = 1,
    /// The side that dialled (proves in `Auth`).
    Dialer = 2,
}

/// The session's passphrase (`--passphrase`, `SYNFONY_PASSPHRASE`).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What one proof is bound to: the prover's role, both peers, and both
/// nonces (the verifier's challenge first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub role: Role,
    pub prover: PeerId,
    pub verifier: PeerId,
    pub verifier_nonce: &'a [u8; AUTH_LEN],
    pub prover_nonce: &'a [u8; AUTH_LEN],
}

impl Secret {
    pub fn new(passphrase: &str) -> Secret {
        Secret(passphrase.as_bytes().to_vec())
    }

    fn mac(&self, c: &Challenge<'_>) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(b"synfony-auth-v1");
        mac.update(&[c.role as u8]);
        mac.update(&c.prover.0.to_be_bytes());
        mac.update(&c.verifier.0.to_be_bytes());
        mac.update(c.verifier_nonce);
        mac.update(c.prover_nonce);
        mac
    }

    /// The proof the prover sends the verifier, answering its nonce.
    pub fn proof(&self, c: &Challenge<'_>) -> [u8; AUTH_LEN] {
        self.mac(c).finalize().into_bytes().into()
    }

    /// Whether `proof` is right (compared in constant time).
    pub fn verify(&self, c: &Challenge<'_>, proof: &[u8; AUTH_LEN]) -> bool {
        self.mac(c).verify_slice(proof).is_ok()
    }
}

/// A fresh nonce from the operating system's generator.
pub fn fresh_nonce() -> Result<[u8; AUTH_LEN], rand::rngs::SysError> {
    use rand::TryRng;
    let mut nonce = [0u8; AUTH_LEN];
    rand::rngs::SysRng.try_fill_bytes(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = PeerId(0xA);
    const B: PeerId = PeerId(0xB);

    #[test]
    fn a_proof_verifies_only_for_its_secret_nonces_peers_and_role() {
        let s = Secret::new("open sesame");
        let (na, nb) = (fresh_nonce().unwrap(), fresh_nonce().unwrap());
        assert_ne!(na, nb);
        // B accepted A's connection: B proves to A, answering A's nonce.
        let c = Challenge {
            role: Role::Acceptor,
            prover: B,
            verifier: A,
            verifier_nonce: &na,
            prover_nonce: &nb,
        };
        let p = s.proof(&c);
        assert!(s.verify(&c, &p));
        assert!(!Secret::new("open sesame!").verify(&c, &p));
        let reflected = Challenge {
            role: Role::Dialer,
            ..c
        };
        assert!(!s.verify(&reflected, &p), "reflected");
        let other_peer = Challenge {
            prover: A,
            verifier: B,
            ..c
        };
        assert!(!s.verify(&other_peer, &p), "other peer");
        let fresh = fresh_nonce().unwrap();
        let replayed = Challenge {
            verifier_nonce: &fresh,
            ..c
        };
        assert!(!s.verify(&replayed, &p), "replayed");
        let mut flipped = p;
        flipped[31] ^= 1;
        assert!(!s.verify(&c, &flipped));
        assert_eq!(format!("{s:?}"), "Secret(..)", "never printed");
    }
}

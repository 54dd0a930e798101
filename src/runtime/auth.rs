//! Passphrase authentication: a mutual challenge–response over the `Hello`
//! exchange (see [`crate::message::Hello`]). Each side sends a fresh nonce;
//! each proves it knows the passphrase with an HMAC-SHA256 over both nonces,
//! both peer ids and its role. The passphrase never crosses the wire, a proof
//! is good for one pair of nonces only (no replay), and the role byte stops a
//! proof from being reflected back at its sender.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::message::AUTH_LEN;
use crate::session::PeerId;

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

impl Secret {
    pub fn new(passphrase: &str) -> Secret {
        Secret(passphrase.as_bytes().to_vec())
    }

    fn mac(
        &self,
        role: Role,
        prover: PeerId,
        verifier: PeerId,
        verifier_nonce: &[u8; AUTH_LEN],
        prover_nonce: &[u8; AUTH_LEN],
    ) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(b"synfony-auth-v1");
        mac.update(&[role as u8]);
        mac.update(&prover.0.to_be_bytes());
        mac.update(&verifier.0.to_be_bytes());
        mac.update(verifier_nonce);
        mac.update(prover_nonce);
        mac
    }

    /// The proof `prover` (in `role`) sends `verifier`, answering the
    /// verifier's nonce.
    pub fn proof(
        &self,
        role: Role,
        prover: PeerId,
        verifier: PeerId,
        verifier_nonce: &[u8; AUTH_LEN],
        prover_nonce: &[u8; AUTH_LEN],
    ) -> [u8; AUTH_LEN] {
        self.mac(role, prover, verifier, verifier_nonce, prover_nonce)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `proof` is right (compared in constant time).
    pub fn verify(
        &self,
        role: Role,
        prover: PeerId,
        verifier: PeerId,
        verifier_nonce: &[u8; AUTH_LEN],
        prover_nonce: &[u8; AUTH_LEN],
        proof: &[u8; AUTH_LEN],
    ) -> bool {
        self.mac(role, prover, verifier, verifier_nonce, prover_nonce)
            .verify_slice(proof)
            .is_ok()
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
        let p = s.proof(Role::Acceptor, B, A, &na, &nb);
        assert!(s.verify(Role::Acceptor, B, A, &na, &nb, &p));
        assert!(!Secret::new("open sesame!").verify(Role::Acceptor, B, A, &na, &nb, &p));
        assert!(!s.verify(Role::Dialer, B, A, &na, &nb, &p), "reflected");
        assert!(!s.verify(Role::Acceptor, A, B, &na, &nb, &p), "other peer");
        let fresh = fresh_nonce().unwrap();
        assert!(!s.verify(Role::Acceptor, B, A, &fresh, &nb, &p), "replayed");
        let mut flipped = p;
        flipped[31] ^= 1;
        assert!(!s.verify(Role::Acceptor, B, A, &na, &nb, &flipped));
        assert_eq!(format!("{s:?}"), "Secret(..)", "never printed");
    }
}

//! Who a peer is (issue 23, item 3): an Ed25519 key per peer, its id derived
//! from the key, and votes signed by their voter — so a member can relay
//! another's vote but never forge one, and no id can be claimed without its key.
//!
//! - [`PeerId::of_key`]: the id is the first 8 bytes of a hash of the public
//!   key. Finding another key with a given id is a 2⁶⁴ search.
//! - [`Signer`]: the private half. Signing is deterministic (Ed25519), so the
//!   session core may sign without drawing randomness; the key itself comes
//!   from the runtime ([`Signer::from_seed`] with 32 random bytes).
//! - [`SignedVote`]: a [`Vote`] with its [`VoteProof`] (the voter's public key
//!   and signature). It carries its key, so anyone can check it with no
//!   directory of keys: the key must hash to the voter's id and the signature
//!   must verify (strictly: no malleable encodings).
//! - [`LinkCert`]: the identity key's signature over the peer's Noise static
//!   key, sent inside the handshake; the handshake proves the static key, the
//!   certificate binds it to the id (a separate key for key exchange, as
//!   ed25519-dalek recommends, instead of converting one key to the other).
//!
//! Every signed message starts with its own context string, so a signature
//! made for one purpose never verifies as another.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::protocol::state::{Event, PeerId, Round, Vote};
use crate::wire::{Model, Reader, WireError, Writer};

/// What a vote's signature covers, before the vote's encoding.
const VOTE_CONTEXT: &[u8] = b"synfony vote v6";
/// What a link certificate covers, before the Noise static key.
const LINK_CONTEXT: &[u8] = b"synfony link key v6";
/// Hashed with a key to make its id.
const ID_CONTEXT: &[u8] = b"synfony peer id v6";

/// A peer's public identity key (Ed25519, compressed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub [u8; 32]);

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerKey({})", PeerId::of_key(self))
    }
}

impl Model for PeerKey {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.0.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PeerKey(r.get_as("peer_key")?))
    }
}

impl PeerId {
    /// The id a key stands for. Never 0 (0 is mapped to 1: a key that hashes
    /// to 0 is as hard to find as one that hashes to 1).
    pub fn of_key(key: &PeerKey) -> PeerId {
        let digest = Sha256::new()
            .chain_update(ID_CONTEXT)
            .chain_update(key.0)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        PeerId(u64::from_be_bytes(id).max(1))
    }
}

/// Why a signed thing was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the key does not belong to the id it signs for")]
    WrongKey,
    #[error("the key is not a valid Ed25519 point")]
    BadKey,
    #[error("the signature does not verify")]
    BadSignature,
}

/// A vote's proof: its voter's public key and signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VoteProof {
    pub key: PeerKey,
    pub signature: [u8; 64],
}

impl std::fmt::Debug for VoteProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VoteProof({:?})", self.key)
    }
}

/// ```text
/// | key [u8; 32] | signature [u8; 64] |
/// ```
impl Model for VoteProof {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.key.encode(w)?;
        self.signature.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(VoteProof {
            key: r.get()?,
            signature: r.get_as("vote.signature")?,
        })
    }
}

/// A vote and its proof: what heartbeats relay and snapshots carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SignedVote {
    pub vote: Vote,
    pub proof: VoteProof,
}

/// ```text
/// | vote Vote | proof VoteProof |
/// ```
impl Model for SignedVote {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.vote.encode(w)?;
        self.proof.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SignedVote {
            vote: r.get()?,
            proof: r.get()?,
        })
    }
}

impl SignedVote {
    /// Whether the vote is its voter's: the key is the voter's and signed it.
    pub fn verify(&self) -> Result<(), ProofError> {
        if PeerId::of_key(&self.proof.key) != self.vote.voter {
            return Err(ProofError::WrongKey);
        }
        let message = vote_message(&self.vote).ok_or(ProofError::BadSignature)?;
        verify(&self.proof.key, &message, &self.proof.signature)
    }
}

fn verify(key: &PeerKey, message: &[u8], signature: &[u8; 64]) -> Result<(), ProofError> {
    let key = VerifyingKey::from_bytes(&key.0).map_err(|_| ProofError::BadKey)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| ProofError::BadSignature)
}

/// The bytes a vote's signature covers: context, voter, round, event; none
/// for a vote the wire cannot carry (no such vote is signed or verifies).
fn vote_message(vote: &Vote) -> Option<Vec<u8>> {
    let mut out = VOTE_CONTEXT.to_vec();
    out.extend(crate::wire::encode_to_vec(vote).ok()?);
    Some(out)
}

/// The identity key's signature over a Noise static key (see the module doc).
pub type LinkCert = [u8; 64];

/// Whether `cert` is `key`'s signature over the Noise static key `noise_key`.
pub fn verify_link_cert(
    key: &PeerKey,
    noise_key: &[u8; 32],
    cert: &LinkCert,
) -> Result<(), ProofError> {
    verify(key, &link_message(noise_key), cert)
}

/// What a link certificate signs: the context, then the Noise static key.
fn link_message(noise_key: &[u8; 32]) -> Vec<u8> {
    [LINK_CONTEXT, noise_key].concat()
}

/// A peer's private identity key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    public: PeerKey,
    id: PeerId,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.id)
    }
}

impl Signer {
    /// The key whose 32 secret bytes are `seed` (random bytes from the OS
    /// for a real peer; a seeded generator's in simulations and tests).
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(&seed);
        let public = PeerKey(key.verifying_key().to_bytes());
        Signer {
            id: PeerId::of_key(&public),
            key,
            public,
        }
    }

    pub fn key(&self) -> PeerKey {
        self.public
    }

    /// This key's id ([`PeerId::of_key`]).
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// Our vote for `round`, signed. A vote the wire cannot carry gets a
    /// signature of zeros, which verifies for nothing (`Session::vote`
    /// refuses such votes before they get here).
    pub fn sign_vote(&self, round: Round, event: Event) -> SignedVote {
        let vote = Vote {
            voter: self.id,
            round,
            event,
        };
        let signature = vote_message(&vote).map_or([0; 64], |m| self.key.sign(&m).to_bytes());
        SignedVote {
            vote,
            proof: VoteProof {
                key: self.public,
                signature,
            },
        }
    }

    /// The certificate binding the Noise static key `noise_key` to us.
    pub fn certify_link_key(&self, noise_key: &[u8; 32]) -> LinkCert {
        self.key.sign(&link_message(noise_key)).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(n: u8) -> Signer {
        Signer::from_seed([n; 32])
    }

    #[test]
    fn a_signed_vote_verifies_and_any_change_breaks_it() {
        let s = signer(1);
        let v = s.sign_vote(Round(7), Event::Pause);
        assert_eq!(v.vote.voter, s.peer_id());
        assert_eq!(v.verify(), Ok(()));

        let mut other_round = v;
        other_round.vote.round = Round(8);
        assert_eq!(other_round.verify(), Err(ProofError::BadSignature));

        let mut other_event = v;
        other_event.vote.event = Event::Play;
        assert_eq!(other_event.verify(), Err(ProofError::BadSignature));

        let mut flipped = v;
        flipped.proof.signature[3] ^= 1;
        assert!(flipped.verify().is_err());
    }

    #[test]
    fn nobody_signs_for_another_id() {
        let (alice, mallory) = (signer(1), signer(2));
        // Mallory's own signature over a vote naming Alice: her key is not Alice's.
        let mut forged = mallory.sign_vote(Round(7), Event::Pause);
        forged.vote.voter = alice.peer_id();
        assert_eq!(forged.verify(), Err(ProofError::WrongKey));
        // Alice's key with Mallory's signature.
        forged.proof.key = alice.key();
        assert_eq!(forged.verify(), Err(ProofError::BadSignature));
    }

    /// A vote the wire cannot carry is signed by nobody: its signature
    /// verifies for nothing, not even another such vote.
    #[test]
    fn an_unencodable_vote_verifies_for_nothing() {
        use crate::protocol::library::SongId;
        let s = signer(1);
        let odd = |index| Event::Unqueue {
            index,
            song: SongId([0; 16]),
        };
        let v = s.sign_vote(Round(1), odd(u16::MAX));
        assert!(crate::wire::encode_to_vec(&v.vote).is_err(), "{v:?}");
        assert_eq!(v.verify(), Err(ProofError::BadSignature));
        let mut w = v;
        w.vote.event = odd(u16::MAX - 1);
        assert_eq!(w.verify(), Err(ProofError::BadSignature));
    }

    #[test]
    fn a_link_cert_binds_one_noise_key() {
        let s = signer(1);
        let cert = s.certify_link_key(&[9; 32]);
        assert_eq!(verify_link_cert(&s.key(), &[9; 32], &cert), Ok(()));
        assert!(verify_link_cert(&s.key(), &[8; 32], &cert).is_err());
        assert!(verify_link_cert(&signer(2).key(), &[9; 32], &cert).is_err());
    }

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let ids: std::collections::BTreeSet<_> = (0..=255).map(|n| signer(n).peer_id()).collect();
        assert_eq!(ids.len(), 256);
        assert!(!ids.contains(&PeerId(0)));
    }

    /// A signature made in one context never verifies in another: no
    /// context is a prefix of another, so no message of one kind (context,
    /// then anything) can be a message of another kind. (The test it
    /// replaces compared messages of different lengths, which could not
    /// verify whatever the contexts.)
    #[test]
    fn a_vote_signature_is_no_link_cert() {
        let contexts = [VOTE_CONTEXT, LINK_CONTEXT, ID_CONTEXT];
        for (i, a) in contexts.iter().enumerate() {
            for (j, b) in contexts.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
            }
        }
    }
}

//! The session's passphrase. It never crosses the wire: links prove it to
//! each other through SPAKE2 ([`super::handshake`]).

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

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        assert_eq!(format!("{:?}", Secret::new("open sesame")), "Secret(..)");
    }
}

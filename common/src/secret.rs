//! Secrets in settings (the gateway's JWT secret, the SMTP password, the key
//! that seals reset tokens for notify-service). A [`Secret`] is read from the
//! configuration like a string (serde-transparent) but never printed: its
//! `Debug` and `Display` are `***`, so a settings struct that derives `Debug`
//! can be logged whole. The value is reached only through [`Secret::expose`].
//!
//! [`Secret::seal`] / [`Secret::open`] encrypt a short value (a reset token)
//! for whoever holds the same secret (ChaCha20-Poly1305, a fresh random
//! nonce each time, the key derived from the secret with SHA-256), so that
//! the value can travel through the outbox, the broker and the event log
//! without being readable there.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// A secret value from the configuration. Never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// 256 random bits from the operating system, as 64 hex digits.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        if SystemRandom::new().fill(&mut bytes).is_err() {
            // ring's system randomness does not fail on supported systems;
            // uuid's v4 draws from the same OS source (getrandom).
            bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        Self(hex(&bytes))
    }

    /// The value itself: only where it is used (signing, logging in to SMTP).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn key(&self) -> Option<LessSafeKey> {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        UnboundKey::new(&CHACHA20_POLY1305, digest.as_ref()).ok().map(LessSafeKey::new)
    }

    /// `plaintext` encrypted and authenticated for the holders of this
    /// secret, as hex (nonce, then ciphertext and tag). `None` only if the
    /// system has no randomness.
    pub fn seal(&self, plaintext: &str) -> Option<String> {
        let key = self.key()?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut data = plaintext.as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data).ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(hex(&out))
    }

    /// What [`Secret::seal`] sealed with the same secret; `None` when it
    /// was sealed with another one, altered, or is no sealed value.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = unhex(sealed)?;
        if bytes.len() < aead::NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, rest) = bytes.split_at(aead::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = self.key()?.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hex back to bytes; `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        let secret = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Settings {
            password: Option<Secret>,
        }
        let printed = format!("{:?}", Settings { password: Some(secret.clone()) });
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(secret.expose(), "hunter2-hunter2");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"hunter2-hunter2\"");
        assert_eq!(serde_json::from_str::<Secret>("\"x\"").unwrap(), Secret::new("x"));
    }

    #[test]
    fn random_secrets_are_long_and_differ() {
        let (a, b) = (Secret::random(), Secret::random());
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_secret_only() {
        let key = Secret::random();
        let sealed = key.seal("the reset token").unwrap();
        assert!(!sealed.contains("reset"));
        assert_ne!(sealed, key.seal("the reset token").unwrap(), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).as_deref(), Some("the reset token"));
        assert_eq!(Secret::random().open(&sealed), None);
        let mut altered = sealed.clone();
        altered.replace_range(40..42, if &sealed[40..42] == "00" { "01" } else { "00" });
        assert_eq!(key.open(&altered), None);
        assert_eq!(key.open("zz"), None);
        assert_eq!(key.open(""), None);
    }
}

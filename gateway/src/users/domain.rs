//! The rules of users, without HTTP or a database: an e-mail address is
//! parsed once into an [`Email`], a new password once into a [`Password`]
//! (the password policy); password hashing (argon2); reset tokens (256
//! random bits, stored only as a hash) and their expiry. Time is passed in.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use uuid::Uuid;

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;

/// Why the input of a user was refused; each has a stable machine code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not an e-mail address (the input as given).
    Email(String),
    /// A password outside the policy.
    WeakPassword,
}

impl Invalid {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Email(_) => "invalid_email",
            Self::WeakPassword => "weak_password",
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Email(raw) => write!(f, "`{raw}` is not an e-mail address"),
            Self::WeakPassword => write!(f, "a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        }
    }
}

impl std::error::Error for Invalid {}

/// A plausible e-mail address, trimmed and lower-cased: one `@`, a dotted
/// domain, no spaces, at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim().to_lowercase();
        let invalid = || Invalid::Email(raw.to_string());
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let plausible = !local.is_empty()
            && email.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if plausible { Ok(Self(email)) } else { Err(invalid()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = Invalid;

    fn try_from(raw: String) -> Result<Self, Invalid> {
        Self::parse(&raw)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password within the policy: [`MIN_PASSWORD`] to [`MAX_PASSWORD`]
/// characters. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        if (MIN_PASSWORD..=MAX_PASSWORD).contains(&raw.chars().count()) {
            Ok(Self(raw))
        } else {
            Err(Invalid::WeakPassword)
        }
    }

    /// The argon2 hash to store, with a fresh salt. CPU-heavy: call it off
    /// the async workers.
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        // 128 random bits from the OS (uuid v4 draws them with getrandom).
        let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())?;
        Argon2::default().hash_password(self.0.as_bytes(), &salt).map(|h| h.to_string())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Whether `password` matches a stored hash (an unreadable hash matches
/// nothing). CPU-heavy, as [`Password::hash`].
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A new one-time reset token: 256 random bits as 64 hex digits.
pub fn new_reset_token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// What is stored of a reset token. It is 256 random bits: a fast hash is
/// enough to keep the stored value useless to a reader of the database.
pub fn hash_reset_token(token: &str) -> String {
    use blake2::{Blake2b512, Digest};
    use std::fmt::Write;
    Blake2b512::digest(token.as_bytes())[..32].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// When a reset token requested at `now` (microseconds) stops working.
pub fn reset_expires_at(now: i64, ttl_seconds: u64) -> i64 {
    let ttl = i64::try_from(ttl_seconds).unwrap_or(i64::MAX);
    now.saturating_add(ttl.saturating_mul(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_parsed_and_normalized() {
        assert_eq!(Email::parse(" Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
        assert_eq!(Email::try_from("bob@example.org".to_string()).unwrap().to_string(), "bob@example.org");
        for bad in
            ["", "alice", "@example.com", "alice@example", "a b@example.com", "a@b@example.com", "a@.com"]
        {
            assert_eq!(Email::parse(bad), Err(Invalid::Email(bad.into())), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
        let err = Email::parse("alice").unwrap_err();
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            ("invalid_email", "`alice` is not an e-mail address")
        );
    }

    #[test]
    fn a_password_has_8_to_128_characters() {
        assert_eq!(Password::parse("1234567".into()).unwrap_err(), Invalid::WeakPassword);
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("é".repeat(128)).is_ok(), "characters, not bytes");
        assert!(Password::parse("x".repeat(129)).is_err());
        let err = Invalid::WeakPassword;
        assert_eq!(
            (err.code(), err.to_string().as_str()),
            ("weak_password", "a password has 8 to 128 characters")
        );
        assert_eq!(format!("{:?}", Password::parse("secret-words".into()).unwrap()), "Password(***)");
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = Password::parse("correct horse".into()).unwrap().hash().unwrap();
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn reset_tokens_are_random_stored_hashed_and_expire() {
        let (a, b) = (new_reset_token(), new_reset_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(hash_reset_token(&a), hash_reset_token(&a));
        assert_ne!(hash_reset_token(&a), hash_reset_token(&b));
        assert_eq!(hash_reset_token(&a).len(), 64);
        assert_eq!(reset_expires_at(1_000_000, 3600), 3_601_000_000);
        assert_eq!(reset_expires_at(1, u64::MAX), i64::MAX);
    }
}

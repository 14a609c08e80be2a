//! Users: registration, tokens and password reset. Passwords are stored as
//! argon2 hashes; reset tokens are stored hashed and used once.
//!
//! | module | owns |
//! | --- | --- |
//! | [`routes`] | the HTTP edge: `/api/auth/users`, `/api/token`, `/api/auth/password-reset[/confirm]` |
//! | [`domain`] | the rules: [`Email`](domain::Email), the password policy and hashing, reset tokens, who is an administrator |
//! | [`storage`] | the `users` and `password_resets` tables |

pub mod domain;
pub mod routes;
pub mod storage;

pub use routes::configure;

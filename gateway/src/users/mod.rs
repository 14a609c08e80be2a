//! Users: registration, tokens, password reset and roles. Passwords are
//! stored as argon2 hashes; reset tokens are stored hashed, used once, and
//! travel to notify-service sealed.
//!
//! | module | owns |
//! | --- | --- |
//! | [`routes`] | the HTTP edge: `/api/auth/users`, `/api/token`, `/api/auth/password-reset[/confirm]`, `/api/admin/users/{id}/role` |
//! | [`domain`] | the rules: [`Email`](domain::Email), the password policy and hashing, reset tokens |
//! | [`admin`] | granting a role (the operator command and the admin route), audited |
//! | [`sessions`] | token versions: which tokens are still valid |
//! | [`limits`] | the stricter rate limit of the anonymous routes; argon2 bounded |
//! | [`storage`] | the `users` and `password_resets` tables |

pub mod admin;
pub mod domain;
pub mod limits;
pub mod routes;
pub mod sessions;
pub mod storage;

pub use routes::configure;

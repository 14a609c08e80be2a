//! Who is calling. The gateway authenticates the client (JWT) and forwards
//! the request to a service with the caller's id and role in the headers
//! below, after removing any such header the client sent. Services trust
//! these headers and are not exposed to clients directly.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use uuid::Uuid;

use crate::error::ApiError;

pub const USER_ID_HEADER: &str = "x-bourse-user-id";
pub const ROLE_HEADER: &str = "x-bourse-user-role";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

crate::named_enum! {
    /// A user's role.
    #[derive(utoipa::ToSchema)]
    pub enum Role {
        User = "user",
        Admin = "admin",
    }
}

/// The authenticated caller of a service route; 401 without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller is an administrator.
    pub fn require_admin(self) -> Result<Self, ApiError> {
        match self.role {
            Role::Admin => Ok(self),
            Role::User => Err(ApiError::forbidden("this route is for administrators")),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
        let user_id = header(USER_ID_HEADER).and_then(|v| Uuid::parse_str(v).ok());
        let role = header(ROLE_HEADER).and_then(|r| r.parse().ok()).unwrap_or(Role::User);
        ready(
            user_id
                .map(|user_id| Caller { user_id, role })
                .ok_or_else(|| ApiError::unauthorized("a valid bearer token is required")),
        )
    }
}

//! REST: the record of the e-mails sent, for administrators.

use actix_web::{HttpResponse, web};
use bourse_common::auth::Caller;
use bourse_common::db::{Db, DbError};
use bourse_common::error::ApiError;
use bourse_common::paging::{Page, PageQuery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::storage;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/admin/notifications", web::get().to(list_sent));
}

/// One e-mail the SMTP server accepted.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentMail {
    /// The event it answered (its `message_id`).
    pub event_id: String,
    pub event_type: String,
    pub user_id: String,
    pub recipient: String,
    /// The e-mail's `Message-ID` header, derived from the event id.
    pub message_id: String,
    pub subject: String,
    /// What the SMTP server answered (`250 ...`).
    pub smtp_reply: String,
    pub sent_at: chrono::DateTime<chrono::Utc>,
}

impl From<storage::Sent> for SentMail {
    fn from(s: storage::Sent) -> Self {
        Self {
            event_id: s.event_id,
            event_type: s.event_type,
            user_id: s.user_id,
            recipient: s.recipient,
            message_id: s.message_id,
            subject: s.subject,
            smtp_reply: s.smtp_reply,
            sent_at: bourse_common::micros_to_time(s.sent_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SentQuery {
    /// Only the e-mails to this user.
    pub user_id: Option<Uuid>,
}

/// The e-mails sent, newest first (administrators only).
#[utoipa::path(
    get,
    path = "/api/admin/notifications",
    tag = "admin",
    params(SentQuery, PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<SentMail>), (status = 403, description = "not an administrator"))
)]
pub async fn list_sent(
    caller: Caller,
    filter: web::Query<SentQuery>,
    page: web::Query<PageQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let (page, per_page, offset) = page.into_inner().resolve()?;
    let user = filter.user_id;
    let (rows, total) =
        db.read(move |c| storage::sent(c, user, per_page, offset).map_err(DbError::from)).await?;
    let items = rows.into_iter().map(SentMail::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, per_page, total }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_sent),
    components(schemas(SentMail, Page<SentMail>)),
    tags((name = "admin", description = "for administrators"))
)]
pub struct Api;

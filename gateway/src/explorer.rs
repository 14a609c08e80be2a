//! The saga explorer: the operators' page at `/admin/` (plain HTML, CSS and
//! JavaScript in `gateway/assets/admin`, built into the binary). It loads
//! nothing from elsewhere and calls only the gateway's admin routes, with the
//! token an administrator gets from `POST /api/token`; the page itself is
//! public, the data behind it is not.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("../assets/admin/index.html");
const SCRIPT: &str = include_str!("../assets/admin/app.js");
const STYLE: &str = include_str!("../assets/admin/app.css");

/// Same origin only: no inline script, no frame, no other host.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(|| async { redirect() }))
        .route("/admin/", web::get().to(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/admin/app.js", web::get().to(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/admin/app.css", web::get().to(|| async { asset("text/css; charset=utf-8", STYLE) }));
}

fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/admin/")).finish()
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

//! Security, the identity part of issue 12, through the gateway: no token
//! but the stack's own is accepted; no address is an administrator by
//! itself; junk tokens do not escape the rate limit; reset e-mails are
//! capped, one token at a time, revoke older access tokens and never show
//! the token in the event log; top-up is a bounded faucet, off unless
//! switched on; registration and login give nothing away.

use std::time::{Duration, Instant};

use bourse_cli::stack;
use bourse_common::auth::Role;
use bourse_common::db::Backend;
use bourse_common::eventlog::{self, StreamOffset};
use bourse_common::on_both_backends;
use bourse_common::secret::Secret;
use bourse_common::service::Service;
use gateway::tokens::Tokens;
use notify_service::mailer::{SmtpSettings, TlsMode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestStack, WAIT};

fn text(mail: &bourse_cli::mailbox::Mail) -> &str {
    mail.text.as_deref().unwrap_or_default()
}

/// The reset token of a reset e-mail.
fn reset_token(mail: &bourse_cli::mailbox::Mail) -> String {
    text(mail)
        .lines()
        .skip_while(|l| !l.starts_with("Your one-time reset token"))
        .map(str::trim)
        .find(|l| l.len() == 64)
        .unwrap_or_else(|| panic!("no token in {}", text(mail)))
        .to_string()
}

/// Why a service refused to start (it must have).
fn refused<T>(started: anyhow::Result<T>) -> anyhow::Error {
    match started {
        Ok(_) => panic!("the service started"),
        Err(e) => e,
    }
}

async fn event_log(t: &TestStack) -> Vec<String> {
    eventlog::read(&t.env.amqp_url, StreamOffset::First, 100_000, Duration::from_secs(2))
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

on_both_backends!(
    security_only_the_stacks_secret_signs_and_admins_are_granted_not_registered,
    security_junk_bearer_tokens_and_guesses_are_rate_limited,
    security_password_reset_is_capped_revokes_tokens_and_never_logs_the_token,
    security_top_up_is_a_bounded_faucet_off_unless_switched_on,
    security_registration_and_login_give_nothing_away,
);

async fn security_only_the_stacks_secret_signs_and_admins_are_granted_not_registered(backend: Backend) {
    let t = TestStack::start(backend).await;

    // Registering the old well-known administrator address gives nothing.
    let admin = t.user("admin@bourse.local").await;
    let (status, body) = t.call("GET", "/api/admin/payments/fees", Some(&admin), None).await;
    assert_eq!(status, 403, "{body}");

    // A token for that user with role admin, signed with any other secret
    // (the old development default among them), is refused.
    let (_, me) = t.call("GET", "/api/users/me/accounts", Some(&admin), None).await;
    assert!(me.is_array());
    let user_id = {
        let (status, body) = t
            .call(
                "POST",
                "/api/auth/users",
                None,
                Some(json!({"email": "eve@example.com", "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    };
    for secret in [Secret::new("bourse-local-development-secret-change-me"), Secret::random()] {
        let forged = Tokens::new(&secret, Duration::from_secs(600)).issue(user_id, Role::Admin, 0).unwrap();
        let (status, body) = t.call("GET", "/api/admin/payments/fees", Some(&forged), None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(t.call("GET", "/api/users/me/accounts", Some(&forged), None).await.0, 401);
    }

    // `bourse admin grant` makes the administrator; the older token (role
    // user) stops working, a new one opens the admin routes.
    t.grant_admin("admin@bourse.local").await;
    // The command wrote to the database: the gateway sees the new version
    // within its cache's lifetime (`sessions::CACHE_TTL`).
    let stale = Duration::from_secs(5);
    bourse_common::testkit::eventually("the older token revoked", stale, || async {
        (t.call("GET", "/api/admin/payments/fees", Some(&admin), None).await.0 == 401).then_some(())
    })
    .await;
    let admin = t.token("admin@bourse.local").await;
    let (status, body) = t.call("GET", "/api/admin/payments/fees", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");

    // Further administrators: by an administrator's request only.
    let eve = t.token("eve@example.com").await;
    let path = format!("/api/admin/users/{user_id}/role");
    let (status, _) = t.call("POST", &path, Some(&eve), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, 403);
    let (status, body) = t.call("POST", &path, None, Some(json!({"role": "admin"}))).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = t.call("POST", &path, Some(&admin), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["email"].as_str(), body["role"].as_str()), (Some("eve@example.com"), Some("admin")));
    let unknown = format!("/api/admin/users/{}/role", uuid::Uuid::now_v7());
    let (status, body) = t.call("POST", &unknown, Some(&admin), Some(json!({"role": "admin"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_user")));
    let eve = t.token("eve@example.com").await;
    assert_eq!(t.call("GET", "/api/admin/payments/fees", Some(&eve), None).await.0, 200);

    // Both grants are audited in the event log: by the operator, by the admin.
    let grants = bourse_common::testkit::eventually("two user.role-granted", WAIT, || async {
        let grants: Vec<Value> = event_log(&t)
            .await
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter(|e| e["envelope"]["type"] == "user.role-granted")
            .collect();
        (grants.len() == 2).then_some(grants)
    })
    .await;
    let payloads: Vec<&Value> = grants.iter().map(|g| &g["envelope"]["payload"]).collect();
    assert_eq!(payloads[0]["via"], "cli");
    assert_eq!(payloads[0]["granted_by"], Value::Null);
    assert_eq!(payloads[1]["via"], "api");
    assert_eq!(payloads[1]["email"], "eve@example.com");
    assert_eq!(payloads[1]["previous_role"], "user");

    // A configured deployment without a secret refuses to start, and says what to set.
    let mut gateway = stack::configure::<gateway::Gateway>(&t.options).unwrap();
    gateway.http.port = 0;
    gateway.settings.jwt_secret = None;
    gateway.settings.password_reset_key = Some(Secret::random());
    let err = refused(gateway::Gateway::run(gateway).await).to_string();
    assert!(err.contains("GATEWAY__SETTINGS__JWT_SECRET"), "{err}");
    let mut notify = stack::configure::<notify_service::NotifyService>(&t.options).unwrap();
    notify.http.port = 0;
    let err = refused(notify_service::NotifyService::run(notify.clone()).await).to_string();
    assert!(err.contains("NOTIFY__SETTINGS__PASSWORD_RESET_KEY"), "{err}");
    // An SMTP login over plain text is refused too, and the password is never printed.
    notify.settings.password_reset_key = Some(Secret::random());
    notify.settings.smtp = SmtpSettings {
        username: Some("bourse".into()),
        password: Some(Secret::new("smtp-password-in-clear")),
        tls: TlsMode::None,
        ..SmtpSettings::default()
    };
    assert!(!format!("{notify:?}").contains("smtp-password-in-clear"));
    let err = refused(notify_service::NotifyService::run(notify).await);
    let err = format!("{err:#} {err:?}");
    assert!(err.contains("tls = none") && !err.contains("smtp-password-in-clear"), "{err}");
    t.stop().await;
}

async fn security_junk_bearer_tokens_and_guesses_are_rate_limited(backend: Backend) {
    // The gateway's own limits, not the test stacks' relaxed ones.
    let t = TestStack::start_tuned(backend, None, &[], SmtpSettings::default(), |o| {
        o.auth_limit_per_minute = None;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..400 {
        let junk = format!("junk-{i}-{}", uuid::Uuid::new_v4());
        let guess = json!({"email": "victim@example.com", "password": format!("guess number {i}")});
        let (status, _) = t.call("POST", "/api/token", Some(&junk), Some(guess)).await;
        statuses.push(status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 350, "{limited} of 400 were 429: {statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");

    // A reset for the guessed address is limited as well (a forwarding header is not trusted).
    let (status, body) = t
        .call_with(
            "POST",
            "/api/auth/password-reset",
            None,
            Some(json!({"email": "victim@example.com"})),
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
    t.stop().await;
}

async fn security_password_reset_is_capped_revokes_tokens_and_never_logs_the_token(backend: Backend) {
    let t = TestStack::start(backend).await;
    let old = t.user("ann@example.com").await;
    t.wait_mails("ann@example.com", 1).await;
    for _ in 0..30 {
        let (status, body) =
            t.call("POST", "/api/auth/password-reset", None, Some(json!({"email": "ann@example.com"}))).await;
        assert_eq!(status, 202, "{body}");
    }
    // At most `password_resets_per_hour` (3) reset e-mails, besides the welcome.
    let mails = t.wait_mails("ann@example.com", 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails_now = t.mails_to("ann@example.com");
    assert_eq!(mails_now.len(), 4, "{:?}", mails_now.iter().map(|m| &m.subject).collect::<Vec<_>>());
    let tokens: Vec<String> = mails[1..].iter().map(reset_token).collect();

    // No reset token is in the event log (nor the outbox it came from).
    let log = event_log(&t).await;
    assert!(log.iter().any(|e| e.contains("user.password-reset-requested")));
    for token in &tokens {
        assert!(!log.iter().any(|e| e.contains(token.as_str())), "the token {token} is in the event log");
    }

    // A newer token ends the older ones; the newest works, once.
    let confirm = |token: &str| json!({"token": token, "new_password": "a brand new secret"});
    let (status, body) =
        t.call("POST", "/api/auth/password-reset/confirm", None, Some(confirm(&tokens[0]))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_reset_token")));
    let (status, body) =
        t.call("POST", "/api/auth/password-reset/confirm", None, Some(confirm(&tokens[2]))).await;
    assert_eq!(status, 204, "{body}");

    // The access token issued before the reset is revoked.
    let (status, body) = t.call("GET", "/api/users/me/accounts", Some(&old), None).await;
    assert_eq!(status, 401, "{body}");
    let login = json!({"email": "ann@example.com", "password": "a brand new secret"});
    let (status, body) = t.call("POST", "/api/token", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
    let new = body["access_token"].as_str().unwrap();
    assert_eq!(t.call("GET", "/api/users/me/accounts", Some(new), None).await.0, 200);
    t.stop().await;
}

async fn security_top_up_is_a_bounded_faucet_off_unless_switched_on(backend: Backend) {
    let t = TestStack::start(backend).await;
    let ann = t.user("ann@example.com").await;
    let top_up = |amount: &str| {
        let ann = ann.clone();
        let amount = amount.to_string();
        let t = &t;
        async move {
            t.call("POST", "/api/users/me/accounts/USDT/top-up", Some(&ann), Some(json!({"amount": amount})))
                .await
        }
    };
    let (status, body) = top_up("100000.01").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("top_up_above_maximum")), "{body}");
    for _ in 0..10 {
        assert_eq!(top_up("100000").await.0, 200);
    }
    let (status, body) = top_up("1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("top_up_daily_maximum")), "{body}");
    assert_eq!(t.accounts(&ann).await["USDT"].0, "1000000");
    let (status, body) = top_up("79228162514264337593543950335").await;
    assert!((400..500).contains(&status), "{status} {body}");
    t.stop().await;

    let t = TestStack::start_tuned(backend, None, &[], SmtpSettings::default(), |o| o.faucet = false).await;
    let ann = t.user("ann@example.com").await;
    let (status, body) =
        t.call("POST", "/api/users/me/accounts/USDT/top-up", Some(&ann), Some(json!({"amount": "1"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("top_up_disabled")), "{body}");
    t.stop().await;
}

async fn security_registration_and_login_give_nothing_away(backend: Backend) {
    let t = TestStack::start(backend).await;
    let register = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password});
        let t = &t;
        async move { t.call("POST", "/api/auth/users", None, Some(body)).await }
    };
    let (status, first) = register("ann@example.com", PASSWORD).await;
    assert_eq!(status, 201, "{first}");
    t.wait_mails("ann@example.com", 1).await;

    // A taken address: the same answer, and the owner is told.
    let (status, again) = register("Ann@Example.com", "another password").await;
    assert_eq!(status, 201, "{again}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&again));
    assert_eq!(again["email"], "ann@example.com");
    assert_ne!(again["id"], first["id"]);
    let mails = t.wait_mails("ann@example.com", 2).await;
    assert_eq!(mails[1].subject.as_deref(), Some("Someone tried to register with your address"));
    assert!(text(&mails[1]).contains("ann@example.com is already registered"), "{}", text(&mails[1]));
    // The owner's password is unchanged.
    t.token("ann@example.com").await;

    // A wrong password for a known address is hashed, and so is any password
    // for an unknown one (against a dummy hash): an unknown address is not
    // answered in a fraction of the time. One-sided and generous on purpose:
    // a loaded machine slows either side, but skipping the hash makes the
    // unknown side ten times faster or more.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..6 {
        for (email, times) in [("ann@example.com", &mut known), ("nobody@example.com", &mut unknown)] {
            let started = Instant::now();
            let body = json!({"email": email, "password": format!("wrong password {i}")});
            let (status, body) = t.call("POST", "/api/token", None, Some(body)).await;
            times.push(started.elapsed());
            assert_eq!((status, body["error"]["message"].as_str()), (401, Some("wrong e-mail or password")));
        }
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[3], unknown[3]);
    assert!(unknown * 4 >= known, "median {known:?} for a known address, {unknown:?} for an unknown one");
    t.stop().await;
}

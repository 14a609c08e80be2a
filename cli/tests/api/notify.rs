//! E-mail through a real SMTP server (the stack's mailbox, aiosmtpd): one per
//! event, to the address kept at registration, with the right words; nothing
//! more for a redelivered event or a restarted service; held while the server
//! is down, sent once it is back; a refused recipient parked without holding
//! up the others.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bourse_cli::mailbox::{Mail, Mailbox};
use bourse_common::config::MessagingConfig;
use bourse_common::db::Backend;
use bourse_common::deadletter;
use bourse_common::eventlog::{self, StreamOffset};
use bourse_common::on_both_backends;
use bourse_common::testkit::{eventually, free_port};
use notify_service::mailer::{Mailer, SendError, SmtpSettings, TlsMode};
use notify_service::templates::Rendered;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestStack, WAIT, limit_buy};

on_both_backends!(
    each_event_sends_one_email_with_its_content_to_its_user,
    a_redelivered_event_or_a_restart_sends_nothing_more,
    with_the_smtp_server_down_emails_wait_and_go_out_once_it_is_back,
    a_refused_recipient_is_parked_and_the_others_still_get_their_mail,
    a_crash_between_the_smtp_reply_and_the_commit_repeats_the_email_with_its_message_id,
    emails_go_over_tls_with_a_login_to_a_server_a_private_ca_signed,
);

const MAILS_QUEUE: &str = "notify-service.mails";
const SENDER: &str = "Bourse <no-reply@bourse.local>";

/// Registers `email`; returns its token and user id.
async fn register(t: &TestStack, email: &str) -> (String, String) {
    let credentials = json!({"email": email, "password": PASSWORD});
    let (status, body) = t.call("POST", "/api/auth/users", None, Some(credentials)).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    (t.token(email).await, id)
}

/// Registers a last user and waits for their welcome: the mails queue is
/// handled in order, so everything sent before has been dealt with by then.
async fn drain(t: &TestStack, sentinel: &str) {
    register(t, sentinel).await;
    t.wait_mails(sentinel, 1).await;
}

fn text(mail: &Mail) -> &str {
    mail.text.as_deref().unwrap_or_default()
}

fn subjects(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(|m| m.subject.as_deref().unwrap_or_default()).collect()
}

async fn each_event_sends_one_email_with_its_content_to_its_user(backend: Backend) {
    let t = TestStack::start(backend).await;
    let (ann, ann_id) = register(&t, "ann@example.com").await;
    let (ben, _) = register(&t, "ben@example.com").await;
    let welcome = t.wait_mails("ann@example.com", 1).await;
    assert_eq!(subjects(&welcome), ["Welcome to Bourse"]);
    assert!(
        text(&welcome[0]).contains("your Bourse account ann@example.com is ready"),
        "{}",
        text(&welcome[0])
    );
    assert_eq!(welcome[0].from.as_deref(), Some(SENDER));

    // Password reset: the token in the e-mail sets the new password.
    let (status, _) =
        t.call("POST", "/api/auth/password-reset", None, Some(json!({"email": "ann@example.com"}))).await;
    assert_eq!(status, 202);
    let mails = t.wait_mails("ann@example.com", 2).await;
    assert_eq!(mails[1].subject.as_deref(), Some("Your Bourse password reset"));
    let token = text(&mails[1])
        .lines()
        .skip_while(|l| !l.starts_with("Your one-time reset token"))
        .map(str::trim)
        .find(|l| l.len() == 64)
        .unwrap_or_else(|| panic!("no token in {}", text(&mails[1])))
        .to_string();
    let confirm = json!({"token": token, "new_password": "a brand new secret"});
    let (status, body) = t.call("POST", "/api/auth/password-reset/confirm", None, Some(confirm)).await;
    assert_eq!(status, 204, "{body}");
    let login = json!({"email": "ann@example.com", "password": "a brand new secret"});
    let (status, body) = t.call("POST", "/api/token", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
    // The reset revoked Ann's older tokens: she goes on with the new one.
    assert_eq!(t.call("GET", "/api/users/me/accounts", Some(&ann), None).await.0, 401);
    let ann = body["access_token"].as_str().unwrap().to_string();

    // Rejected: 1.5 ETH at 2000.5 needs 3000.75 USDT; Ann has 100.
    t.top_up(&ann, "USDT", "100").await;
    let rejected = t.place(&ann, limit_buy("ETH-USDT", "2000.5", "1.5")).await;
    let rejected_id = rejected["id"].as_str().unwrap();
    t.order_reaches(&ann, rejected_id, "rejected").await;
    let mails = t.wait_mails("ann@example.com", 3).await;
    assert_eq!(mails[2].subject.as_deref(), Some("Order rejected: buy 1.5 ETH on ETH-USDT"));
    for line in [
        &format!("Order      {rejected_id}"),
        "Quantity   1.5 ETH",
        "Price      2000.5 USDT",
        "To reserve 3000.75 USDT",
        "Reason: insufficient funds: 100 available, 3000.75 needed USDT",
    ] {
        assert!(text(&mails[2]).contains(line), "{line:?} in {}", text(&mails[2]));
    }

    // A trade: Ben's resting sell is partly filled by Ann's buy.
    t.top_up(&ann, "USDT", "1000").await;
    t.top_up(&ben, "ETH", "1").await;
    let sell = t
        .place(
            &ben,
            json!({"market": "ETH-USDT", "side": "sell", "type": "limit", "price": "2000", "quantity": "1"}),
        )
        .await;
    t.order_reaches(&ben, sell["id"].as_str().unwrap(), "open").await;
    let buy = t.place(&ann, limit_buy("ETH-USDT", "2000", "0.4")).await;
    t.order_reaches(&ann, buy["id"].as_str().unwrap(), "filled").await;

    let ann_mails = t.wait_mails("ann@example.com", 4).await;
    let filled = &ann_mails[3];
    assert_eq!(filled.subject.as_deref(), Some("Order filled: bought 0.4 ETH on ETH-USDT"));
    // Taker fee 0.2% of the 0.4 ETH received.
    for line in [
        "Quantity   0.4 ETH at 2000 USDT",
        "Paid       800 USDT",
        "Credited   0.3992 ETH (after a 0.0008 ETH fee)",
    ] {
        assert!(text(filled).contains(line), "{line:?} in {}", text(filled));
    }
    assert!(filled.html.as_deref().unwrap().contains("<strong>0.3992 ETH</strong>"));
    let ben_mails = t.wait_mails("ben@example.com", 2).await;
    let partial = &ben_mails[1];
    assert_eq!(partial.subject.as_deref(), Some("Order partially filled: sold 0.4 ETH on ETH-USDT"));
    // Maker fee 0.1% of the 800 USDT received.
    for line in ["Credited   799.2 USDT (after a 0.8 USDT fee)", "Unfilled   0.6 ETH"] {
        assert!(text(partial).contains(line), "{line:?} in {}", text(partial));
    }

    // Exactly these, and each to its user only.
    drain(&t, "zed@example.com").await;
    let ann_mails = t.mails_to("ann@example.com");
    assert_eq!(
        subjects(&ann_mails),
        [
            "Welcome to Bourse",
            "Your Bourse password reset",
            "Order rejected: buy 1.5 ETH on ETH-USDT",
            "Order filled: bought 0.4 ETH on ETH-USDT"
        ]
    );
    assert_eq!(
        subjects(&t.mails_to("ben@example.com")),
        ["Welcome to Bourse", "Order partially filled: sold 0.4 ETH on ETH-USDT"]
    );
    let all = t.mailbox.received().unwrap();
    assert!(all.iter().all(|m| m.rcpt_tos.len() == 1), "one recipient per e-mail");
    let ids: HashSet<&str> = all.iter().map(|m| m.message_id.as_deref().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "a Message-ID per e-mail");

    // The record, as an administrator reads it: Ann's four and her deposit
    // address, each with the SMTP server's reply.
    let admin = t.admin("admin@bourse.local").await;
    let body = recorded(&t, &admin, Some(&ann_id), 5).await;
    let items = body["items"].as_array().unwrap();
    assert!(items.iter().all(
        |i| i["recipient"] == "ann@example.com" && i["smtp_reply"].as_str().unwrap().starts_with("250 ")
    ));
    let recorded: HashSet<&str> = items.iter().map(|i| i["message_id"].as_str().unwrap()).collect();
    let ann_all = t.all_mails_to("ann@example.com");
    let received: HashSet<&str> = ann_all.iter().map(|m| m.message_id.as_deref().unwrap()).collect();
    assert_eq!(recorded, received);
    let (status, _) = t.call("GET", "/api/admin/notifications", Some(&ann), None).await;
    assert_eq!(status, 403, "the record is for administrators only");
    t.stop().await;
}

async fn a_redelivered_event_or_a_restart_sends_nothing_more(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    let (_, dan_id) = register(&t, "dan@example.com").await;
    let welcome = t.wait_mails("dan@example.com", 1).await;

    // The registration again, as the broker would redeliver it: same message id.
    let log =
        eventlog::read(&t.env.amqp_url, StreamOffset::First, 10_000, Duration::from_secs(1)).await.unwrap();
    let registered = log
        .iter()
        .find(|e| e.envelope.message_type == "user.registered" && e.envelope.correlation_id == dan_id)
        .expect("the registration is in the event log");
    assert_eq!(welcome[0].message_id, Some(format!("<{}@bourse.local>", registered.envelope.message_id)));
    eventlog::republish(&t.env.amqp_url, registered).await.unwrap();
    drain(&t, "sentinel-1@example.com").await;

    // A crash and restart of notify-service after sending, then the registration once more.
    t.stack.crash_and_restart("notify-service").await.unwrap();
    eventlog::republish(&t.env.amqp_url, registered).await.unwrap();
    drain(&t, "sentinel-2@example.com").await;

    assert_eq!(subjects(&t.mails_to("dan@example.com")), ["Welcome to Bourse"]);
    assert!(deadletter::list(&t.env.amqp_url, MAILS_QUEUE, 10).await.unwrap().is_empty());
    t.stop().await;
}

async fn with_the_smtp_server_down_emails_wait_and_go_out_once_it_is_back(backend: Backend) {
    let mut t = TestStack::start(backend).await;
    t.mailbox.stop().await;
    let (eve, _) = register(&t, "eve@example.com").await;
    // The exchange goes on without its SMTP server.
    t.top_up(&eve, "USDT", "10").await;
    let rejected = t.place(&eve, limit_buy("ETH-USDT", "2000", "1")).await;
    t.order_reaches(&eve, rejected["id"].as_str().unwrap(), "rejected").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a few attempts fail meanwhile

    t.mailbox.restart().await.unwrap();
    let mails = t.wait_mails("eve@example.com", 2).await;
    assert_eq!(subjects(&mails), ["Welcome to Bourse", "Order rejected: buy 1 ETH on ETH-USDT"]);
    drain(&t, "sentinel@example.com").await;
    assert_eq!(t.mails_to("eve@example.com").len(), 2, "each sent once");
    assert!(deadletter::list(&t.env.amqp_url, MAILS_QUEUE, 10).await.unwrap().is_empty());
    t.stop().await;
}

async fn a_refused_recipient_is_parked_and_the_others_still_get_their_mail(backend: Backend) {
    let quick_retries = MessagingConfig {
        retry_delays_ms: vec![100, 200, 400],
        max_attempts: 4,
        ..MessagingConfig::default()
    };
    let t = TestStack::start_with(
        backend,
        Some(quick_retries),
        &["--reject", "^bounce", "--defer", "^later"],
        SmtpSettings::default(),
    )
    .await;
    register(&t, "bounce@example.com").await; // 550: never deliverable
    register(&t, "later@example.com").await; // 451 every time: retried, then parked
    register(&t, "fay@example.com").await;
    assert_eq!(subjects(&t.wait_mails("fay@example.com", 1).await), ["Welcome to Bourse"]);

    // Each refused twice: the welcome and the deposit address.
    let parked: Vec<Value> = eventually("the refused e-mails parked", WAIT, || async {
        let parked = deadletter::list(&t.env.amqp_url, MAILS_QUEUE, 10).await.unwrap();
        (parked.len() == 4).then(|| {
            parked
                .iter()
                .map(|d| serde_json::to_value(d).unwrap())
                .filter(|d| d["envelope"]["type"] == "user.registered")
                .collect()
        })
    })
    .await;
    assert_eq!(parked.len(), 2, "{parked:?}");
    let error_of = |needle: &str| {
        parked
            .iter()
            .find(|d| d["envelope"]["payload"]["email"].as_str().unwrap().starts_with(needle))
            .unwrap_or_else(|| panic!("{needle} parked: {parked:?}"))
    };
    let bounced = error_of("bounce");
    assert!(bounced["error"].as_str().unwrap().contains("550"), "{bounced}");
    assert_eq!(bounced["attempts"], 1, "a permanent refusal is not retried: {bounced}");
    let deferred = error_of("later");
    assert!(deferred["error"].as_str().unwrap().contains("451"), "{deferred}");
    assert_eq!(deferred["attempts"], 4, "a temporary refusal is retried: {deferred}");
    assert!(t.mails_to("bounce@example.com").is_empty() && t.mails_to("later@example.com").is_empty());
    t.stop().await;
}

/// The one window left, as the README describes it: the SMTP server accepted
/// the e-mail, then notify-service died before its transaction committed. The
/// event comes again and the e-mail goes again, with the same Message-ID.
async fn a_crash_between_the_smtp_reply_and_the_commit_repeats_the_email_with_its_message_id(
    backend: Backend,
) {
    let mut t = TestStack::start(backend).await;
    let admin = t.admin("admin@bourse.local").await;
    let (_, gus_id) = register(&t, "gus@example.com").await;
    // The fault fires in the next transaction of any notify consumer: it is armed
    // once both welcomes and both deposit addresses are committed, not merely in the mailbox.
    recorded(&t, &admin, None, 4).await;

    let notify = t.stack.service("notify-service").unwrap();
    notify.bus.faults.crash_consumer_before_commit(1);
    let (status, _) =
        t.call("POST", "/api/auth/password-reset", None, Some(json!({"email": "gus@example.com"}))).await;
    assert_eq!(status, 202);
    t.wait_mails("gus@example.com", 2).await;
    t.stack.crash_and_restart("notify-service").await.unwrap();

    let mails = t.wait_mails("gus@example.com", 3).await;
    assert_eq!(
        subjects(&mails),
        ["Welcome to Bourse", "Your Bourse password reset", "Your Bourse password reset"]
    );
    assert_eq!(mails[1].message_id, mails[2].message_id, "a repeated e-mail is recognisable as the same");
    assert_eq!(mails[1].text, mails[2].text);
    drain(&t, "sentinel@example.com").await;
    assert_eq!(t.mails_to("gus@example.com").len(), 3, "the redelivery after the restart is sent once");
    // Recorded once: the record is what committed (the welcome, the deposit address, the reset).
    recorded(&t, &admin, Some(&gus_id), 3).await;
    t.stop().await;
}

/// Waits until `total` e-mails (to `user_id`, or to anyone) are recorded as
/// sent, and returns the record: an e-mail is in the mailbox a moment before
/// its transaction commits.
async fn recorded(t: &TestStack, admin: &str, user_id: Option<&str>, total: u64) -> Value {
    let path = match user_id {
        Some(id) => format!("/api/admin/notifications?user_id={id}"),
        None => "/api/admin/notifications".to_string(),
    };
    eventually(&format!("{total} e-mail(s) recorded"), WAIT, || async {
        let (status, body) = t.call("GET", &path, Some(admin), None).await;
        assert_eq!(status, 200, "{body}");
        (body["total"] == total).then_some(body)
    })
    .await
}

async fn emails_go_over_tls_with_a_login_to_a_server_a_private_ca_signed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pki = PrivateCa::write(dir.path());
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    // The server refuses any e-mail before STARTTLS and a login.
    let server = ["--tls-cert", cert, "--tls-key", key, "--auth", "bourse:s3cret-smtp"];
    let smtp = SmtpSettings {
        tls: TlsMode::Starttls,
        username: Some("bourse".into()),
        password: Some("s3cret-smtp".into()),
        ca_file: Some(pki.ca.clone()),
        ..SmtpSettings::default()
    };
    let t = TestStack::start_with(backend, None, &server, smtp.clone()).await;
    register(&t, "tls@example.com").await;
    assert_eq!(subjects(&t.wait_mails("tls@example.com", 1).await), ["Welcome to Bourse"]);

    // A wrong password, or a certificate from an authority not trusted: the
    // e-mail waits (retried) instead of being parked, as for a server that is down.
    let smtp = SmtpSettings { port: t.mailbox.port, ..smtp };
    let mail = Rendered { subject: "s".into(), text: "t".into(), html: "h".into() };
    for (settings, error) in [
        (SmtpSettings { password: Some("wrong".into()), ..smtp.clone() }, "535"),
        (SmtpSettings { ca_file: None, ..smtp.clone() }, "UnknownIssuer"),
    ] {
        let mailer = Mailer::new(&settings, SENDER).unwrap();
        let sent = mailer.send("<x@bourse.local>", "tls@example.com", &mail);
        assert!(matches!(&sent, Err(SendError::Transient(e)) if e.contains(error)), "{sent:?}");
    }
    assert_eq!(t.mails_to("tls@example.com").len(), 1);

    // TLS from the first byte (port 465 style), to a second server.
    let port = free_port();
    let mut smtps =
        Mailbox::start(&dir.path().join("smtps"), port, &[&server[..], &["--smtps"]].concat()).await.unwrap();
    let mailer = Mailer::new(&SmtpSettings { tls: TlsMode::Tls, port, ..smtp }, SENDER).unwrap();
    let sent = mailer.send("<y@bourse.local>", "smtps@example.com", &mail);
    assert!(sent.as_ref().is_ok_and(|reply| reply.starts_with("250 ")), "{sent:?}");
    let received = smtps.received().unwrap();
    assert_eq!(received.iter().map(|m| m.rcpt_tos.clone()).collect::<Vec<_>>(), [["smtps@example.com"]]);
    smtps.stop().await;
    t.stop().await;
}

/// A certificate authority and a server certificate it signed for 127.0.0.1, as PEM files.
struct PrivateCa {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl PrivateCa {
    fn write(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Bourse test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let pki = Self { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }
}

//! E-mails per second over one SMTP connection: notify-service's [`Mailer`]
//! against lettre's own `SmtpTransport` (pooled), to the same server.
//!
//!   /usr/bin/python3 scripts/mailbox.py --dir /tmp/bench-mail --port 2525 &   # or a running `bourse up`
//!   cargo bench -p notify-service --bench smtp
//!
//! `BOURSE_BENCH_SMTP=host:port` (default 127.0.0.1:2525), `BOURSE_BENCH_MAILS` (default 200).

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use lettre::message::MultiPart;
use lettre::{Message, SmtpTransport, Transport};
use notify_service::mailer::{Mailer, SmtpSettings};
use notify_service::templates::Rendered;

fn main() {
    let server = std::env::var("BOURSE_BENCH_SMTP").unwrap_or_else(|_| "127.0.0.1:2525".into());
    let n: usize = std::env::var("BOURSE_BENCH_MAILS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let (host, port) = server.rsplit_once(':').expect("host:port");
    let smtp = SmtpSettings { host: host.into(), port: port.parse().unwrap(), ..SmtpSettings::default() };
    let from = "Bourse <no-reply@bourse.local>";
    let text = "Hello,\n\nyour order was filled.\n".repeat(10);
    let mail = Rendered { subject: "bench".into(), text: text.clone(), html: format!("<pre>{text}</pre>") };

    let mailer = Mailer::new(&smtp, from).unwrap();
    let ours = rate(n, |i| {
        mailer
            .send(&mailer.message_id(uuid::Uuid::now_v7()), &format!("bench{i}@example.com"), &mail)
            .unwrap();
    });

    let transport = SmtpTransport::builder_dangerous(host).port(smtp.port).build();
    let stock = rate(n, |i| {
        let message = Message::builder()
            .from(from.parse().unwrap())
            .to(format!("bench{i}@example.com").parse().unwrap())
            .subject("bench")
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .unwrap();
        transport.send(&message).unwrap();
    });
    println!("{n} e-mails each to {server}, one connection:");
    println!("  notify-service Mailer       {ours:>8.0} e-mails/s");
    println!("  lettre SmtpTransport        {stock:>8.0} e-mails/s");
    println!("  ratio                       {:>8.1}x", ours / stock);
}

/// E-mails per second of `send`, after one untimed warm-up (the connect).
fn rate(n: usize, mut send: impl FnMut(usize)) -> f64 {
    send(n);
    let start = Instant::now();
    (0..n).for_each(&mut send);
    n as f64 / start.elapsed().as_secs_f64()
}

//! The stack's local SMTP server: `scripts/mailbox.py` (Python's aiosmtpd),
//! which keeps every e-mail it accepts in a folder, as `<n>.eml` (the message
//! as received) and `<n>.json` (its headers and decoded bodies).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};

/// The server, embedded: `bourse up` needs no checkout beside it.
const SCRIPT: &str = include_str!("../../scripts/mailbox.py");

/// A running mailbox; stopped when dropped.
#[derive(Debug)]
pub struct Mailbox {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
}

/// One e-mail the mailbox accepted, as `<n>.json` holds it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub rcpt_tos: Vec<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The plain-text body, with `\n` line ends.
    pub text: Option<String>,
    pub html: Option<String>,
}

/// A Python that can import `module`: `$BOURSE_PYTHON`, `python3`, or Debian's own
/// (where Debian's `python3-*` packages install).
pub fn python_with(module: &str) -> anyhow::Result<String> {
    let candidates =
        std::env::var("BOURSE_PYTHON").into_iter().chain(["python3".into(), "/usr/bin/python3".into()]);
    for python in candidates {
        let ok = std::process::Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if ok.is_ok_and(|s| s.success()) {
            return Ok(python);
        }
    }
    anyhow::bail!("no Python that imports {module} found: install its Debian package or set BOURSE_PYTHON")
}

impl Mailbox {
    /// Starts the mailbox on 127.0.0.1:`port`, keeping e-mails in `dir`;
    /// `args` are more of its options (`--reject REGEX`, `--defer REGEX`).
    /// Returns once it accepts connections.
    pub async fn start(dir: &Path, port: u16, args: &[&str]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn(dir, port, &args)?;
        let mut mailbox = Self { child, port, dir: dir.to_path_buf(), args };
        mailbox.wait_listening().await?;
        Ok(mailbox)
    }

    async fn wait_listening(&mut self) -> anyhow::Result<()> {
        let address = format!("127.0.0.1:{}", self.port);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the mailbox on {address} exited at start ({status}); is the port taken?");
            }
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the mailbox did not listen on {address} within 10 s")
    }

    /// Stops the server (an SMTP outage); [`Mailbox::restart`] brings it back on the same port and folder.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.child = spawn(&self.dir, self.port, &self.args)?;
        self.wait_listening().await
    }

    /// Every e-mail received so far, oldest first.
    pub fn received(&self) -> anyhow::Result<Vec<Mail>> {
        received(&self.dir)
    }
}

fn spawn(dir: &Path, port: u16, args: &[String]) -> anyhow::Result<Child> {
    let child = Command::new(
        python_with("aiosmtpd")
            .map_err(|e| e.context("install python3-aiosmtpd (bash scripts/up.sh does)"))?,
    )
    .arg("-c")
    .arg(SCRIPT)
    .arg("--dir")
    .arg(dir)
    .args(["--port", &port.to_string()])
    .args(args)
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .kill_on_drop(true)
    .spawn()?;
    Ok(child)
}

/// The e-mails kept in a mailbox folder, oldest first.
pub fn received(dir: &Path) -> anyhow::Result<Vec<Mail>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let mut mail: Mail = serde_json::from_slice(&std::fs::read(path)?)?;
            mail.text = mail.text.map(|t| t.replace("\r\n", "\n"));
            mail.html = mail.html.map(|t| t.replace("\r\n", "\n"));
            Ok(mail)
        })
        .collect()
}

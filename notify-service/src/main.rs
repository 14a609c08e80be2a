//! The `notify-service` binary: configuration, telemetry and the service, nothing else.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::main::<notify_service::NotifyService>().await
}

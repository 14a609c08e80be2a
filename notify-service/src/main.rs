#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::serve(
        notify_service::default_config(),
        notify_service::ENV_PREFIX,
        notify_service::run,
    )
    .await
}

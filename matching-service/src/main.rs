#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::serve(
        matching_service::default_config(),
        matching_service::ENV_PREFIX,
        matching_service::run,
    )
    .await
}

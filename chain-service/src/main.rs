#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::serve(
        chain_service::default_config(),
        chain_service::ENV_PREFIX,
        chain_service::run,
    )
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::serve(
        payment_service::default_config(),
        payment_service::ENV_PREFIX,
        payment_service::run,
    )
    .await
}

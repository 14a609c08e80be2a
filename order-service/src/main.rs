#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::serve(
        order_service::default_config(),
        order_service::ENV_PREFIX,
        order_service::run,
    )
    .await
}

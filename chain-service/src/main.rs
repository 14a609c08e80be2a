#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::main::<chain_service::ChainService>().await
}

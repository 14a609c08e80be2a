#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::main::<gateway::Gateway>().await
}

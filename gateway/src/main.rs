#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::serve(gateway::default_config(), gateway::ENV_PREFIX, gateway::run).await
}

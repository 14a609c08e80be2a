#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::main::<matching_service::MatchingService>().await
}

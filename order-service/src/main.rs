#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::main::<order_service::OrderService>().await
}

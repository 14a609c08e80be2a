#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bourse_common::service::main::<payment_service::PaymentService>().await
}

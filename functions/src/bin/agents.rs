//! Lambda function for `/api/agents/`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::Agents).await
}

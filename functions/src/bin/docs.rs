//! Lambda function for `/api/openapi.json`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::Docs).await
}

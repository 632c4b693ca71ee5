//! Lambda function for `/api/templates/`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::Templates).await
}

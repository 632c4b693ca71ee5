//! Lambda function for `/api/sessions/`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::Sessions).await
}

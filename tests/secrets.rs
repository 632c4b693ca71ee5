//! Secrets from SSM Parameter Store at cold start, against a local AWS emulator.

use aws_sdk_ssm::types::ParameterType;
use lambent::Config;

use crate::helpers::services::Moto;

#[tokio::test]
async fn secure_string_parameters_fill_the_secrets_at_cold_start() {
    let moto = Moto::start().await;
    let sdk = moto.sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    for (name, value) in [("/lambent/openai-key", "sk-from-ssm"), ("/lambent/db-token", "db-token-from-ssm")] {
        ssm.put_parameter().name(name).value(value).r#type(ParameterType::SecureString).send().await.unwrap();
    }
    let config = Config::from_lookup(|key| match key {
        "OPENAI_API_KEY_PARAMETER" => Some("/lambent/openai-key".into()),
        "DATABASE_AUTH_TOKEN_PARAMETER" => Some("/lambent/db-token".into()),
        "OPENAI_API_KEY" => Some("ignored-when-a-parameter-is-named".into()),
        _ => None,
    })
    .unwrap();

    let resolved = lambent_functions::resolve_secrets(config, Some(sdk)).await.unwrap();

    assert_eq!(resolved.openai_api_key.as_ref().map(|s| s.expose()), Some("sk-from-ssm"));
    assert_eq!(resolved.database_auth_token.as_ref().map(|s| s.expose()), Some("db-token-from-ssm"));
    assert!(!format!("{resolved:?}").contains("from-ssm"), "secrets never print");
}

#[tokio::test]
async fn a_missing_parameter_is_named_and_without_parameters_aws_is_not_touched() {
    let moto = Moto::start().await;
    let config = Config::from_lookup(|key| (key == "OPENAI_API_KEY_PARAMETER").then(|| "/nope".into())).unwrap();
    let err = lambent_functions::resolve_secrets(config, Some(moto.sdk_config().await)).await.unwrap_err();
    assert!(err.to_string().contains("/nope"), "{err}");

    // No parameter names: the plain variables stand, and no AWS configuration is even loaded.
    let plain = Config::from_lookup(|key| (key == "OPENAI_API_KEY").then(|| "sk-plain".into())).unwrap();
    let resolved = lambent_functions::resolve_secrets(plain, None).await.unwrap();
    assert_eq!(resolved.openai_api_key.unwrap().expose(), "sk-plain");
}

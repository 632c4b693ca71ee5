//! Secrets from SSM Parameter Store at cold start, against a local AWS emulator.

use aws_sdk_ssm::types::ParameterType;
use lambent::Config;

use lambent_testkit::Moto;

#[tokio::test]
async fn secure_string_parameters_fill_the_secrets_at_cold_start() {
    let moto = Moto::start().await;
    let sdk = crate::helpers::sdk_config(&moto).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let sealing_key = "5a".repeat(32);
    for (name, value) in [
        ("/lambent/openai-key", "sk-from-ssm"),
        ("/lambent/db-token", "db-token-from-ssm"),
        ("/lambent/secrets-key", sealing_key.as_str()),
    ] {
        ssm.put_parameter().name(name).value(value).r#type(ParameterType::SecureString).send().await.unwrap();
    }
    let config = Config::from_lookup(|key| match key {
        "OPENAI_API_KEY_PARAMETER" => Some("/lambent/openai-key".into()),
        "DATABASE_AUTH_TOKEN_PARAMETER" => Some("/lambent/db-token".into()),
        "LAMBENT_SECRETS_KEY_PARAMETER" => Some("/lambent/secrets-key".into()),
        "OPENAI_API_KEY" => Some("ignored-when-a-parameter-is-named".into()),
        _ => None,
    })
    .unwrap();

    let resolved = lambent_functions::resolve_secrets(config, Some(sdk)).await.unwrap();

    assert_eq!(resolved.default_provider().api_key.as_ref().map(|s| s.expose()), Some("sk-from-ssm"));
    assert_eq!(resolved.database_auth_token.as_ref().map(|s| s.expose()), Some("db-token-from-ssm"));
    assert_eq!(resolved.secrets_key, Some(lambent::config::SecretsKey::parse(&sealing_key).unwrap()));
    assert!(!format!("{resolved:?}").contains("from-ssm"), "secrets never print");
    assert!(!format!("{resolved:?}").contains(&sealing_key), "the sealing key never prints");
}

#[tokio::test]
async fn a_missing_parameter_is_named_and_without_parameters_aws_is_not_touched() {
    let moto = Moto::start().await;
    let config = Config::from_lookup(|key| (key == "OPENAI_API_KEY_PARAMETER").then(|| "/nope".into())).unwrap();
    let err =
        lambent_functions::resolve_secrets(config, Some(crate::helpers::sdk_config(&moto).await)).await.unwrap_err();
    assert!(err.to_string().contains("/nope"), "{err}");

    // No parameter names: the plain variables stand, and no AWS configuration is even loaded.
    let plain = Config::from_lookup(|key| (key == "OPENAI_API_KEY").then(|| "sk-plain".into())).unwrap();
    let resolved = lambent_functions::resolve_secrets(plain, None).await.unwrap();
    assert_eq!(resolved.default_provider().api_key.as_ref().unwrap().expose(), "sk-plain");
}

/// The `auth` function serves `/api/health/`, which reports whether a model key is configured, but may not
/// read the key: it keeps the parameter's name and never asks SSM (a parameter it could not read would fail
/// its cold start). The agent functions read it.
#[tokio::test]
async fn only_the_functions_that_call_the_model_read_its_key_and_the_others_know_it_is_configured() {
    use lambent::http::Function;
    let moto = Moto::start().await;
    let env = |key: &str| (key == "OPENAI_API_KEY_PARAMETER").then(|| "/lambent/not-readable-here".into());

    let auth = lambent_functions::secrets_for(
        Function::Auth,
        Config::from_lookup(env).unwrap(),
        Some(crate::helpers::sdk_config(&moto).await),
    )
    .await
    .expect("auth never asks SSM for the key");
    let chat = lambent_functions::secrets_for(
        Function::AgentChat,
        Config::from_lookup(env).unwrap(),
        Some(crate::helpers::sdk_config(&moto).await),
    )
    .await;

    assert!(auth.default_provider().api_key.is_none());
    assert_eq!(auth.default_provider().api_key_parameter.as_deref(), Some("/lambent/not-readable-here"));
    let (state, _dir) = crate::helpers::fresh_state_with(&[]).await;
    let state = lambent::AppState::new(lambent::Config { database_url: state.config.database_url.clone(), ..auth }, {
        lambent::Store::open_url(&state.config.database_url, None).await.unwrap()
    });
    let health = serde_json::to_value(state.health().await).unwrap();
    assert_eq!(health["checks"]["model_provider"]["api_key"], true, "{health}");
    let err = chat.expect_err("agent-chat reads the key, and this one does not exist");
    assert!(err.to_string().contains("/lambent/not-readable-here"), "{err}");
}

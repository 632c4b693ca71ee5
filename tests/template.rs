//! The SAM template, checked in code: validators accept misspelled streaming modes, so this test is what
//! guarantees every route reaches exactly one function and every SSE route really streams, and that the one
//! function without routes (housekeeping) runs daily with the database settings the others have.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses")
}

/// An API event: (path, method, response transfer mode).
type Event = (String, String, Option<String>);
/// A function: (logical id, binary, events).
type Function = (String, String, Vec<Event>);

/// The scheduled housekeeping function: the one without HTTP events.
const SCHEDULED: &str = "PruneFunction";

/// Every function: (logical id, resource).
fn all_functions(template: &Value) -> impl Iterator<Item = (&str, &Value)> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, resource)| (id.as_str().unwrap(), resource))
}

fn binary(resource: &Value) -> String {
    resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap().to_owned()
}

/// What a `!Ref` names.
fn reference(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

/// The functions behind the REST API (every one but [`SCHEDULED`]).
fn functions(template: &Value) -> Vec<Function> {
    let mut out = Vec::new();
    for (id, resource) in all_functions(template) {
        if id == SCHEDULED {
            continue;
        }
        let binary = binary(resource);
        let mut events = Vec::new();
        for (_, event) in resource["Properties"]["Events"].as_mapping().into_iter().flatten() {
            assert_eq!(event["Type"].as_str(), Some("Api"), "{id:?}: every event is a REST API event");
            let props = &event["Properties"];
            events.push((
                props["Path"].as_str().unwrap().to_owned(),
                props["Method"].as_str().unwrap().to_ascii_lowercase(),
                props["ResponseTransferMode"].as_str().map(str::to_owned),
            ));
        }
        out.push((id.to_owned(), binary, events));
    }
    out
}

const STREAMING: [&str; 4] =
    ["/api/agent/stream/", "/api/agent/tool-output/", "/api/agent/approvals/", "/api/sessions/{id}/events/"];

#[test]
fn every_documented_route_maps_to_exactly_one_function_event_and_back() {
    let template = template();
    let functions = functions(&template);
    let doc = serde_json::to_value(lambent::http::openapi::document()).unwrap();
    let mut documented: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((path.clone(), method.clone()));
        }
    }
    documented.insert((lambent::http::openapi::PATH.to_owned(), "get".into()));

    // API Gateway resources carry no trailing slash; requests with one reach the same resource.
    let matches = |route: &(String, String), event: &Event| {
        route.0.trim_end_matches('/') == event.0 && (event.1 == "any" || event.1 == route.1)
    };
    for route in &documented {
        let hits: Vec<&str> = functions
            .iter()
            .flat_map(|(id, _, events)| events.iter().filter(|e| matches(route, e)).map(move |_| id.as_str()))
            .collect();
        assert_eq!(hits.len(), 1, "{route:?} is served by {hits:?}");
    }
    for (id, _, events) in &functions {
        for event in events {
            assert!(documented.iter().any(|route| matches(route, event)), "{id}: {event:?} serves no documented route");
        }
    }
}

#[test]
fn streaming_routes_stream_and_nothing_else_does() {
    let template = template();
    for (id, _, events) in functions(&template) {
        for (path, _, mode) in events {
            let streams = STREAMING.iter().any(|s| s.trim_end_matches('/') == path);
            let expected = streams.then(|| "RESPONSE_STREAM".to_owned());
            assert_eq!(mode, expected, "{id} {path}");
        }
    }
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
}

#[test]
fn every_binary_named_by_the_template_exists_in_functions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut binaries: BTreeMap<String, String> = BTreeMap::new();
    let template = template();
    for (id, binary) in all_functions(&template).map(|(id, resource)| (id, binary(resource))) {
        assert!(root.join(format!("src/bin/{binary}.rs")).exists(), "{id}: functions/src/bin/{binary}.rs");
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "{id}: [[bin]] {binary} in functions/Cargo.toml");
        assert!(binaries.insert(binary.clone(), id.to_owned()).is_none(), "{binary} is built once");
    }
    let on_disk = std::fs::read_dir(root.join("src/bin")).unwrap().count();
    assert_eq!(binaries.len(), on_disk, "every function binary is deployed: {binaries:?}");
}

#[test]
fn cloudfront_sends_the_same_content_security_policy_as_the_local_server() {
    let template = template();
    let policy = &template["Resources"]["SiteHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
        ["ContentSecurityPolicy"]["ContentSecurityPolicy"];
    assert_eq!(policy.as_str(), Some(lambent_site::CONTENT_SECURITY_POLICY));
}

/// CloudFront sends API Gateway the execute-api host; the viewer's goes along as X-Forwarded-Host, which the
/// API's pagination links are built from (see lambda.rs for what the API does with it).
#[test]
fn cloudfront_forwards_the_viewers_host_to_the_api() {
    let template = template();
    let config = &template["Resources"]["Site"]["Properties"]["DistributionConfig"];
    let api = config["CacheBehaviors"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|b| b["PathPattern"].as_str() == Some("/api/*"))
        .expect("an /api/* behaviour");
    let associations = api["FunctionAssociations"].as_sequence().expect("functions on /api/*");
    let viewer_request: Vec<&Value> =
        associations.iter().filter(|a| a["EventType"].as_str() == Some("viewer-request")).collect();
    assert_eq!(viewer_request.len(), 1, "{associations:?}");
    let arn = match &viewer_request[0]["FunctionARN"] {
        Value::Tagged(tagged) if tagged.tag == "GetAtt" => tagged.value.as_str().unwrap().to_owned(),
        other => panic!("not a !GetAtt of a function here: {other:?}"),
    };
    let function = arn.split('.').next().unwrap();
    let code = template["Resources"][function]["Properties"]["FunctionCode"].as_str().unwrap();
    assert!(code.contains("request.headers['x-forwarded-host'] = {value: request.headers.host.value}"), "{code}");
}

#[test]
fn each_deployed_function_serves_exactly_the_routes_its_events_name_and_streams_as_deployed() {
    let deployed = functions(&template());
    assert_eq!(deployed.len(), lambent::http::Function::ALL.len(), "one template function per Function");
    for (id, binary, events) in deployed {
        let function = lambent::http::Function::ALL
            .into_iter()
            .find(|f| f.binary() == binary)
            .unwrap_or_else(|| panic!("{id}: no lambent::http::Function builds {binary}"));
        let (_, doc) = function.api().split_for_parts();
        let mut served: BTreeSet<String> =
            doc.paths.paths.keys().map(|path| path.trim_end_matches('/').to_owned()).collect();
        if function == lambent::http::Function::Docs {
            // The document's own route is served undocumented.
            served.insert(lambent::http::openapi::PATH.trim_end_matches('/').to_owned());
        }
        let named: BTreeSet<String> = events.iter().map(|(path, _, _)| path.clone()).collect();
        assert_eq!(served, named, "{id} ({binary}): the routes its router serves and its events name");
        let streamed = events.iter().all(|(_, _, mode)| mode.as_deref() == Some("RESPONSE_STREAM"));
        assert_eq!(function.streams(), streamed, "{id} ({binary}): streams");
    }
}

#[test]
fn the_prune_function_runs_daily_with_the_database_settings_and_serves_no_route() {
    let template = template();
    let prune = &template["Resources"][SCHEDULED];
    assert_eq!(binary(prune), "prune");
    let props = &prune["Properties"];
    let events: Vec<&Value> = props["Events"].as_mapping().expect("events").values().collect();
    assert_eq!(events.len(), 1, "one trigger: {events:?}");
    // An EventBridge rule (`Schedule`), daily: a cron with a fixed minute and hour and every day, or rate(1 day).
    assert_eq!(events[0]["Type"].as_str(), Some("Schedule"));
    let schedule = events[0]["Properties"]["Schedule"].as_str().unwrap();
    let daily = match schedule.strip_prefix("cron(").and_then(|c| c.strip_suffix(')')) {
        Some(cron) => {
            let fields: Vec<&str> = cron.split(' ').collect();
            fields.len() == 6
                && fields[..2].iter().all(|f| f.parse::<u8>().is_ok())
                && matches!(fields[2..], ["*", "*", "?", "*"])
        }
        None => schedule == "rate(1 day)",
    };
    assert!(daily, "{schedule}");
    // Its own timeout, well past the margin before the deadline in which it starts no batch.
    let timeout = props["Timeout"].as_u64().expect("a timeout of its own");
    assert!(timeout > 3 * lambent_functions::DEADLINE_MARGIN.as_secs() && timeout <= 900, "{timeout}");
    // The database settings every function has (from Globals) and its token, nothing of the model provider's.
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    for name in ["DATABASE_URL", "DATABASE_AUTH_TOKEN_PARAMETER"] {
        assert!(!globals[name].is_null(), "{name} in Globals");
        assert!(props["Environment"]["Variables"][name].is_null(), "{name} is not overridden");
    }
    let retention_days = &props["Environment"]["Variables"]["LAMBENT_EVENTS_RETENTION_DAYS"];
    assert_eq!(reference(retention_days), Some("EventsRetentionDays"));
    let retention = &template["Parameters"]["EventsRetentionDays"];
    assert_eq!((retention["Default"].as_u64(), retention["MinValue"].as_u64()), (Some(7), Some(1)));
    let policies: Vec<Option<&str>> = props["Policies"].as_sequence().unwrap().iter().map(reference).collect();
    assert_eq!(policies, [Some("ReadDatabaseToken")]);
    // The same policies as an HTTP function that reads only the database.
    let agents = &template["Resources"]["AgentsFunction"]["Properties"]["Policies"];
    assert_eq!(&props["Policies"], agents);
}

#[test]
fn functions_log_json_lines_and_the_two_alarms_watch_metrics_that_exist() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"), "JSON lines on Lambda");
    let variables = &globals["Environment"]["Variables"];
    // `!Ref AWS::StackName`, as the YAML reader keeps a tag.
    let stack = |v: &Value| match v {
        Value::Tagged(tagged) => tagged.tag == "Ref" && tagged.value.as_str() == Some("AWS::StackName"),
        _ => false,
    };
    assert!(stack(&variables["LAMBENT_METRICS_SERVICE"]), "{variables:?}");
    assert!(stack(&template["Resources"]["Api"]["Properties"]["Name"]), "the API is named for the 5xx alarm");

    let server = &template["Resources"]["ServerErrorRateAlarm"]["Properties"];
    assert_eq!(
        (server["Namespace"].as_str(), server["MetricName"].as_str()),
        (Some("AWS/ApiGateway"), Some("5XXError"))
    );
    assert_eq!(server["Statistic"].as_str(), Some("Average"), "the average of 5XXError is the 5xx rate");
    assert!(stack(&server["Dimensions"][0]["Value"]), "{server:?}");

    // The upstream alarm's metrics are the ones a turn's EMF line carries, in its namespace and dimension.
    let metrics = lambent::telemetry::Metrics::capture("stack");
    metrics.turn(&lambent::telemetry::TurnMetrics::default());
    let line = &metrics.lines()[0];
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    let upstream = &template["Resources"]["UpstreamErrorRateAlarm"]["Properties"];
    let watched: Vec<&Value> = upstream["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m.get("MetricStat"))
        .map(|stat| &stat["Metric"])
        .collect();
    assert_eq!(watched.len(), 2);
    for metric in watched {
        let name = metric["MetricName"].as_str().unwrap();
        assert!(line.get(name).is_some(), "{name} is not in a turn's EMF line: {line}");
        assert_eq!(metric["Namespace"].as_str(), directive["Namespace"].as_str());
        assert_eq!(metric["Dimensions"][0]["Name"].as_str(), Some("Service"));
        assert!(stack(&metric["Dimensions"][0]["Value"]));
    }
    assert_eq!(directive["Dimensions"], serde_json::json!([["Service"]]));
    let rate = upstream["Metrics"].as_sequence().unwrap().iter().find(|m| m.get("Expression").is_some()).unwrap();
    assert_eq!(rate["Expression"].as_str(), Some("100 * errors / turns"));
}

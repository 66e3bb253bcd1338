//! A component's metadata as its plugin gets it: template tags filled in, `envRef` values
//! read, and the host's own `blockhost.*` settings taken out.

use crate::blocks::Metadata;
use crate::plugins::pool::Limits;
use crate::resources::{Component, MetadataValue};

/// Plain values with template tags filled in, and `envRef` values read from the
/// environment (never the sidecar's own tokens). `secretKeyRef` needs a secret store,
/// which this host cannot run yet.
pub fn resolve_metadata(
    component: &Component,
    app_id: &str,
    namespace: Option<&str>,
) -> Result<Metadata, String> {
    component
        .metadata
        .iter()
        .map(|item| {
            let value = match &item.value {
                MetadataValue::Plain(text) => fill_template(text, app_id, namespace),
                MetadataValue::EnvRef(var) => {
                    if is_sidecar_secret(var) {
                        return Err(format!(
                            "metadata '{}': envRef may not read {var}",
                            item.name
                        ));
                    }
                    std::env::var(var).unwrap_or_default()
                }
                MetadataValue::SecretKeyRef { name, .. } => {
                    return Err(format!(
                        "metadata '{}' uses secretKeyRef (secret '{name}'), but this version \
                         of blockhost has no secret stores; use a plain value or envRef for now",
                        item.name
                    ))
                }
            };
            Ok((item.name.clone(), value))
        })
        .collect()
}

/// The sidecar's own variables, which no component may read.
fn is_sidecar_secret(var: &str) -> bool {
    var.starts_with("DAPR_") || var == "APP_API_TOKEN"
}

/// `{appID}` is the app id, `{namespace}` `<namespace>.<app id>` (the app id alone without
/// a namespace), and each `{uuid}` a fresh UUID, as daprd fills them.
fn fill_template(text: &str, app_id: &str, namespace: Option<&str>) -> String {
    if !text.contains('{') {
        return text.to_owned();
    }
    let namespaced = match namespace {
        Some(ns) => format!("{ns}.{app_id}"),
        None => app_id.to_owned(),
    };
    let mut out = text
        .replace("{appID}", app_id)
        .replace("{namespace}", &namespaced);
    while out.contains("{uuid}") {
        out = out.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
    }
    out
}

/// Metadata keys under this prefix configure the host, per component, and are not passed
/// to the plugin.
const HOST_SETTING_PREFIX: &str = "blockhost.";

/// Applies (and removes) the host's own per-component settings:
/// `blockhost.callTimeout` (a duration), `blockhost.memoryLimitMb` (at most the sidecar's
/// `--plugin-memory-limit-mb`, which sizes the engine's memory slots) and
/// `blockhost.maxInstances`.
pub fn take_host_settings(metadata: &mut Metadata, defaults: &Limits) -> Result<Limits, String> {
    let mut limits = defaults.clone();
    let mut failure = None;
    metadata.retain(|(key, value)| {
        let Some(setting) = key.strip_prefix(HOST_SETTING_PREFIX) else {
            return true;
        };
        if let Err(message) = apply(&mut limits, defaults, key, setting, value) {
            failure.get_or_insert(message);
        }
        false
    });
    failure.map_or(Ok(limits), Err)
}

fn apply(
    limits: &mut Limits,
    defaults: &Limits,
    key: &str,
    setting: &str,
    value: &str,
) -> Result<(), String> {
    match setting {
        "callTimeout" => {
            limits.call_timeout = crate::resources::duration::parse(value)
                .ok_or_else(|| format!("{key} '{value}' is not a duration (write e.g. 2s)"))?;
        }
        "memoryLimitMb" => match value.parse::<usize>() {
            Ok(mb) if mb > 0 && mb << 20 <= defaults.memory_bytes => {
                limits.memory_bytes = mb << 20;
            }
            _ => {
                return Err(format!(
                    "{key} '{value}' must be a whole number of MiB between 1 and {} \
                     (raise --plugin-memory-limit-mb for more)",
                    defaults.memory_bytes >> 20
                ))
            }
        },
        "maxInstances" => match value.parse::<u32>() {
            Ok(n) if n > 0 => limits.max_instances_override = Some(n),
            _ => return Err(format!("{key} '{value}' must be a positive whole number")),
        },
        _ => {
            return Err(format!(
                "unknown host setting {key}: use blockhost.callTimeout, \
                 blockhost.memoryLimitMb or blockhost.maxInstances"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{MetadataItem, Source};

    fn settings(pairs: &[(&str, &str)]) -> (Result<Limits, String>, Metadata) {
        let mut metadata: Metadata = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let limits = take_host_settings(&mut metadata, &Limits::default());
        (limits, metadata)
    }

    #[test]
    fn host_settings_are_applied_and_hidden_from_the_plugin() {
        let (limits, rest) = settings(&[
            ("redisHost", "x"),
            ("blockhost.callTimeout", "250ms"),
            ("blockhost.memoryLimitMb", "16"),
            ("blockhost.maxInstances", "2"),
        ]);
        let limits = limits.unwrap();
        assert_eq!(limits.call_timeout, std::time::Duration::from_millis(250));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.max_instances_override, Some(2));
        assert_eq!(rest, vec![("redisHost".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn bad_host_settings_are_explained_in_full() {
        assert_eq!(
            settings(&[("blockhost.memoryLimitMb", "100000")])
                .0
                .unwrap_err(),
            "blockhost.memoryLimitMb '100000' must be a whole number of MiB between 1 and 128 \
             (raise --plugin-memory-limit-mb for more)"
        );
        assert_eq!(
            settings(&[("blockhost.nope", "1")]).0.unwrap_err(),
            "unknown host setting blockhost.nope: use blockhost.callTimeout, \
             blockhost.memoryLimitMb or blockhost.maxInstances"
        );
        assert_eq!(
            settings(&[("blockhost.callTimeout", "soon")])
                .0
                .unwrap_err(),
            "blockhost.callTimeout 'soon' is not a duration (write e.g. 2s)"
        );
        assert_eq!(
            settings(&[("blockhost.maxInstances", "0")]).0.unwrap_err(),
            "blockhost.maxInstances '0' must be a positive whole number"
        );
    }

    fn component(items: Vec<(&str, MetadataValue)>) -> Component {
        Component {
            name: "c".into(),
            component_type: "state.in-memory".into(),
            version: "v1".into(),
            metadata: items
                .into_iter()
                .map(|(name, value)| MetadataItem {
                    name: name.to_owned(),
                    value,
                })
                .collect(),
            init_timeout: std::time::Duration::from_secs(5),
            ignore_errors: false,
            scopes: Vec::new(),
            secret_store: None,
            source: Source {
                file: "c.yaml".into(),
                line: 1,
            },
        }
    }

    #[test]
    fn templates_are_filled_as_daprd_fills_them() {
        let c = component(vec![
            ("a", MetadataValue::Plain("{appID}-x".into())),
            ("b", MetadataValue::Plain("{namespace}/y".into())),
            ("c", MetadataValue::Plain("{uuid}|{uuid}".into())),
            ("d", MetadataValue::Plain("plain {text}".into())),
        ]);
        let with_ns = resolve_metadata(&c, "app", Some("prod")).unwrap();
        assert_eq!(with_ns[0].1, "app-x");
        assert_eq!(with_ns[1].1, "prod.app/y");
        let (first, second) = with_ns[2].1.split_once('|').unwrap();
        assert!(uuid::Uuid::parse_str(first).is_ok() && first != second);
        assert_eq!(with_ns[3].1, "plain {text}");
        let without_ns = resolve_metadata(&c, "app", None).unwrap();
        assert_eq!(without_ns[1].1, "app/y");
    }

    #[test]
    fn env_refs_read_the_environment_but_never_the_sidecars_tokens() {
        // A variable of this test's own: nothing else in the process reads it.
        std::env::set_var("BLOCKHOST_TEST_ENV_REF", "from-env");
        let c = component(vec![(
            "v",
            MetadataValue::EnvRef("BLOCKHOST_TEST_ENV_REF".into()),
        )]);
        assert_eq!(resolve_metadata(&c, "app", None).unwrap()[0].1, "from-env");
        for var in ["DAPR_API_TOKEN", "DAPR_ANYTHING", "APP_API_TOKEN"] {
            let c = component(vec![("v", MetadataValue::EnvRef(var.into()))]);
            assert_eq!(
                resolve_metadata(&c, "app", None).unwrap_err(),
                format!("metadata 'v': envRef may not read {var}")
            );
        }
    }
}

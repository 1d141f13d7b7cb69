//! The config file: the same DatabaseConnection and AccessPolicy documents `kubectl apply` takes, plus
//! the v1 Secrets they reference (or credentials from the environment).
//!
//! Every error names the file, the document (its position, kind and name) and the field.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::{Path, PathBuf},
};

use base64::Engine;
use dbward_crds::{AccessPolicySpec, DatabaseConnectionSpec, Document, FieldError, document::kind_of};
use serde::Deserialize;

/// A configuration problem, precise enough to fix without guessing.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub file: Option<PathBuf>,
    /// 1-based position of the document in the file, when the problem is in one.
    pub document: Option<usize>,
    /// `Kind "name"` of the document, when known.
    pub object: Option<String>,
    /// The field, e.g. `spec.tls.mode`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.file {
            write!(f, "{}: ", p.display())?;
        }
        match (self.document, &self.object) {
            (Some(n), Some(o)) => write!(f, "document {n} ({o}): ")?,
            (Some(n), None) => write!(f, "document {n}: ")?,
            (None, Some(o)) => write!(f, "{o}: ")?,
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            file: None,
            document: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    fn at(mut self, document: usize, object: Option<String>) -> Self {
        self.document = Some(document);
        self.object = object;
        self
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// A v1 Secret as found in a config file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretDoc {
    metadata: SecretMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct SecretMeta {
    name: String,
}

/// A Secret's decoded keys. Debug never prints values.
#[derive(Default, Clone)]
pub struct SecretData(BTreeMap<String, Vec<u8>>);

impl SecretData {
    /// Decoded values by key.
    pub fn new(data: BTreeMap<String, Vec<u8>>) -> Self {
        Self(data)
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The parsed file: documents by kind, secrets by name.
#[derive(Debug, Default)]
pub struct FileConfig {
    pub connections: Vec<Document<DatabaseConnectionSpec>>,
    pub policies: Vec<Document<AccessPolicySpec>>,
    pub secrets: HashMap<String, SecretData>,
    /// The file's directory, against which relative paths in the file are resolved.
    pub base_dir: Option<PathBuf>,
}

/// Reads and checks a config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_owned()),
        ..ConfigError::new(format!("cannot read the config file: {e}"))
    })?;
    let mut cfg = parse_str(&text).map_err(|mut e| {
        e.file = Some(path.to_owned());
        e
    })?;
    cfg.base_dir = path.parent().map(Path::to_owned);
    Ok(cfg)
}

/// Parses the documents of a config file.
pub fn parse_str(text: &str) -> Result<FileConfig, ConfigError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ConfigError::new(format!("not valid YAML: {e}")))?;
    let mut cfg = FileConfig::default();
    for (i, doc) in docs.into_iter().enumerate() {
        let n = i + 1;
        if doc.is_null() {
            continue;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let kind = kind_of(&doc).map(str::to_owned);
        let object = match (&kind, &name) {
            (Some(k), Some(nm)) => Some(format!("{k} \"{nm}\"")),
            (Some(k), None) => Some(k.clone()),
            _ => None,
        };
        let at = |e: ConfigError| e.at(n, object.clone());
        match kind.as_deref() {
            Some("DatabaseConnection") => {
                let d: Document<DatabaseConnectionSpec> = typed(doc).map_err(at)?;
                d.validate().map_err(|e| at(field_errors(e)))?;
                cfg.connections.push(d);
            }
            Some("AccessPolicy") => {
                let d: Document<AccessPolicySpec> = typed(doc).map_err(at)?;
                d.validate().map_err(|e| at(field_errors(e)))?;
                cfg.policies.push(d);
            }
            Some("Secret") => {
                let s: SecretDoc = typed(doc).map_err(at)?;
                let data = decode_secret(&s).map_err(at)?;
                if cfg.secrets.insert(s.metadata.name.clone(), data).is_some() {
                    return Err(at(
                        ConfigError::new("a Secret with this name appears twice").field("metadata.name")
                    ));
                }
            }
            Some(other) => {
                return Err(at(ConfigError::new(format!(
                    "kind \"{other}\" is not read here (expected DatabaseConnection, AccessPolicy or Secret)"
                ))
                .field("kind")));
            }
            None => return Err(at(ConfigError::new("missing kind").field("kind"))),
        }
    }
    check_across(&cfg)?;
    Ok(cfg)
}

fn typed<T: for<'de> Deserialize<'de>>(doc: serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let err = ConfigError::new(e.into_inner().to_string());
        if path == "." { err } else { err.field(path) }
    })
}

fn field_errors(errors: Vec<FieldError>) -> ConfigError {
    let mut it = errors.into_iter();
    let Some(first) = it.next() else {
        return ConfigError::new("invalid");
    };
    let rest: Vec<String> = it.map(|e| e.to_string()).collect();
    let mut message = first.message.clone();
    if !rest.is_empty() {
        message.push_str(&format!(" (and: {})", rest.join("; ")));
    }
    ConfigError::new(message).field(first.field)
}

fn decode_secret(s: &SecretDoc) -> Result<SecretData, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in &s.data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| ConfigError::new("is not valid base64").field(format!("data.{k}")))?;
        out.insert(k.clone(), bytes);
    }
    // As in Kubernetes, stringData wins over data.
    for (k, v) in &s.string_data {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    Ok(SecretData(out))
}

/// Checks that span documents: unique names and ports.
pub(crate) fn check_across(cfg: &FileConfig) -> Result<(), ConfigError> {
    let mut names = HashMap::new();
    let mut ports = HashMap::new();
    for d in &cfg.connections {
        let object = Some(format!("DatabaseConnection \"{}\"", d.metadata.name));
        if names.insert(d.metadata.name.as_str(), ()).is_some() {
            return Err(ConfigError {
                object,
                ..ConfigError::new("defined twice").field("metadata.name")
            });
        }
        if let Some(other) = ports.insert(d.spec.local_port, d.metadata.name.as_str()) {
            return Err(ConfigError {
                object,
                ..ConfigError::new(format!(
                    "port {} is already used by connection \"{other}\"",
                    d.spec.local_port
                ))
                .field("spec.localPort")
            });
        }
    }
    Ok(())
}

impl FileConfig {
    /// A Secret key's value: from a Secret document in the file, else from the environment variable
    /// `DBWARD_SECRET_<NAME>_<KEY>` (upper case, other characters as `_`).
    pub fn secret_value(
        &self,
        secret: &str,
        key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<u8>, String> {
        if let Some(data) = self.secrets.get(secret) {
            return data.0.get(key).cloned().ok_or_else(|| {
                let keys: Vec<&str> = data.0.keys().map(String::as_str).collect();
                format!(
                    "secret \"{secret}\" has no key \"{key}\" (it has: {})",
                    keys.join(", ")
                )
            });
        }
        let var = env_name(secret, key);
        env(&var).map(String::into_bytes).ok_or_else(|| {
            format!("secret \"{secret}\" is not in the config file and ${var} is not set; add a Secret document or set the variable")
        })
    }
}

/// `DBWARD_SECRET_<NAME>_<KEY>` for a secret name and key.
pub fn env_name(secret: &str, key: &str) -> String {
    let up = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("DBWARD_SECRET_{}_{}", up(secret), up(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: dbward.dev/v1alpha1
kind: DatabaseConnection
metadata: {name: orders}
spec:
  host: 127.0.0.1
  port: 5432
  database: shop
  localPort: 15432
  credentialsSecretRef: {name: orders-db}
  tls: {mode: disable}
---
apiVersion: v1
kind: Secret
metadata: {name: orders-db}
data:
  username: YXBw
stringData:
  password: s3cret
"#;

    #[test]
    fn reads_connections_and_secrets() {
        let cfg = parse_str(GOOD).unwrap();
        assert_eq!(cfg.connections.len(), 1);
        let env = |_: &str| None;
        assert_eq!(cfg.secret_value("orders-db", "username", &env).unwrap(), b"app");
        assert_eq!(
            cfg.secret_value("orders-db", "password", &env).unwrap(),
            b"s3cret"
        );
        let e = cfg.secret_value("orders-db", "nope", &env).unwrap_err();
        assert!(e.contains("has no key \"nope\""), "{e}");
        assert!(format!("{:?}", cfg.secrets).contains("password"));
        assert!(!format!("{:?}", cfg.secrets).contains("s3cret"));
    }

    #[test]
    fn secrets_from_the_environment() {
        let cfg = parse_str("").unwrap();
        let env = |k: &str| (k == "DBWARD_SECRET_ORDERS_DB_PASSWORD").then(|| "x".to_owned());
        assert_eq!(cfg.secret_value("orders-db", "password", &env).unwrap(), b"x");
        let e = cfg.secret_value("orders-db", "username", &env).unwrap_err();
        assert!(e.contains("$DBWARD_SECRET_ORDERS_DB_USERNAME"), "{e}");
    }

    fn err(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_document_and_field() {
        let bad_mode = GOOD.replace("mode: disable", "mode: verify");
        let e = err(&bad_mode);
        assert!(
            e.starts_with("document 1 (DatabaseConnection \"orders\"): spec.tls.mode: "),
            "{e}"
        );

        let typo = GOOD.replace("localPort: 15432", "localPort: 15432\n  alowAmbient: true");
        let e = err(&typo);
        assert!(
            e.contains("document 1 (DatabaseConnection \"orders\")") && e.contains("alowAmbient"),
            "{e}"
        );

        let e = err(&GOOD.replace("host: 127.0.0.1", "host: \"\""));
        assert!(e.contains("spec.host"), "{e}");

        let e = err("kind: ConfigMap\nmetadata: {name: x}\n");
        assert_eq!(
            e,
            "document 1 (ConfigMap \"x\"): kind: kind \"ConfigMap\" is not read here (expected DatabaseConnection, AccessPolicy or Secret)"
        );

        let e = err(&GOOD.replace("data:\n  username: YXBw", "data:\n  username: '!!'"));
        assert!(
            e.contains("document 2 (Secret \"orders-db\"): data.username: is not valid base64"),
            "{e}"
        );

        let e = err("a: [");
        assert!(e.starts_with("not valid YAML"), "{e}");
    }

    #[test]
    fn ports_and_names_are_unique() {
        let second = GOOD
            .split("---")
            .next()
            .unwrap()
            .replace("name: orders}", "name: billing}");
        let e = err(&format!("{GOOD}\n---\n{second}"));
        assert!(e.contains("DatabaseConnection \"billing\": spec.localPort: port 15432 is already used by connection \"orders\""), "{e}");
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("orders-db", "ca.crt"), "DBWARD_SECRET_ORDERS_DB_CA_CRT");
    }
}

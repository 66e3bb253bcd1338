//! Dapr resource YAML: `Component` documents (several per file) from the resources paths.
//! Every error names the file and line it comes from.

mod component;
pub mod duration;
mod subscription;

use std::fmt;
use std::path::{Path, PathBuf};

pub use component::{Component, MetadataItem, MetadataValue};
pub use subscription::DeclaredSubscription;

/// Where a resource came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based line of the document's first line.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ResourceError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl ResourceError {
    fn at(source: &Source, message: impl Into<String>) -> Self {
        Self {
            file: source.file.clone(),
            line: source.line,
            message: message.into(),
        }
    }
}

/// Everything found in the resources paths that this host acts on.
#[derive(Debug, Default)]
pub struct Resources {
    pub components: Vec<Component>,
    pub subscriptions: Vec<DeclaredSubscription>,
}

/// Reads every `*.yaml` / `*.yml` directly inside each directory (not recursively, as
/// daprd). A missing directory is an error only when it was asked for explicitly.
pub fn load(paths: &[PathBuf]) -> Result<Resources, ResourceError> {
    let mut resources = Resources::default();
    for dir in paths {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|err| ResourceError {
                file: dir.clone(),
                line: 0,
                message: format!("cannot read the resources directory: {err}"),
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for file in files {
            load_file(&file, &mut resources)?;
        }
    }
    Ok(resources)
}

fn load_file(file: &Path, resources: &mut Resources) -> Result<(), ResourceError> {
    let text = std::fs::read_to_string(file).map_err(|err| ResourceError {
        file: file.to_owned(),
        line: 0,
        message: format!("cannot read: {err}"),
    })?;
    for (line, document) in split_documents(&text) {
        let source = Source {
            file: file.to_owned(),
            line,
        };
        match parse_document(document, &source)? {
            Some(Resource::Component(component)) => resources.components.push(component),
            Some(Resource::Subscription(subscription)) => {
                resources.subscriptions.push(subscription);
            }
            None => {}
        }
    }
    Ok(())
}

enum Resource {
    Component(Component),
    Subscription(DeclaredSubscription),
}

#[derive(serde::Deserialize)]
struct Header {
    kind: Option<String>,
}

/// Places a YAML error in the file.
fn located(source: &Source, what: &str, err: &serde_yaml::Error) -> ResourceError {
    let line = err
        .location()
        .map_or(source.line, |l| source.line + l.line() - 1);
    ResourceError {
        file: source.file.clone(),
        line,
        message: format!("{what}: {err}"),
    }
}

/// Parses one YAML document. Returns `None` for empty documents and for kinds this host
/// does not act on (logged).
fn parse_document(text: &str, source: &Source) -> Result<Option<Resource>, ResourceError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|err| located(source, "invalid YAML", &err))?;
    if value.is_null() {
        return Ok(None);
    }
    let header: Header = serde_yaml::from_value(value)
        .map_err(|err| ResourceError::at(source, format!("not a Dapr resource: {err}")))?;
    match header.kind.as_deref() {
        Some("Component") => Ok(Some(Resource::Component(component::parse(text, source)?))),
        Some("Subscription") => Ok(Some(Resource::Subscription(subscription::parse(
            text, source,
        )?))),
        Some(kind @ ("Configuration" | "Resiliency" | "HTTPEndpoint")) => {
            tracing::warn!(source = %source, "ignoring resource of kind {kind}: not supported yet");
            Ok(None)
        }
        Some(kind) => {
            tracing::warn!(source = %source, "ignoring resource of unknown kind {kind}");
            Ok(None)
        }
        None => Err(ResourceError::at(source, "the document has no `kind`")),
    }
}

/// Splits a multi-document YAML stream on `---` lines, returning each document with the
/// 1-based line it starts on, so parse errors inside it can be placed in the file.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            documents.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start_byte..]));
    documents
}

#[cfg(test)]
mod tests {
    use super::split_documents;

    #[test]
    fn documents_keep_their_line_numbers() {
        let docs = split_documents("a: 1\n---\nb: 2\nc: 3\n---\n");
        assert_eq!(docs, vec![(1, "a: 1\n"), (3, "b: 2\nc: 3\n"), (6, "")]);
    }
}

//! Streams declared by the operator (`--stream NAME=KEY`, the config file's
//! `[[streams]]`): parsed, checked by the store's rules, and merged.

use serde::Deserialize;

use crate::model::{StreamName, validate_declared_key};

/// `NAME=KEY`: a stream and the secret key it is published with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamDecl {
    pub name: String,
    pub key: String,
}

/// A declaration that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclError {
    #[error("'{0}' is not NAME=KEY (example: --stream studio=s3cret-key)")]
    NotNameKey(String),
    /// The name breaks the store's naming rule.
    #[error("{0}")]
    Name(String),
    #[error("the key of stream '{name}': {reason}")]
    Key { name: String, reason: String },
    #[error("in the config file's [[streams]]")]
    InFile(#[source] Box<DeclError>),
    #[error("streams '{0}' and '{1}' have the same key; every stream needs its own key")]
    SameKey(String, String),
}

impl std::str::FromStr for StreamDecl {
    type Err = DeclError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, key) = s
            .split_once('=')
            .ok_or_else(|| DeclError::NotNameKey(s.to_owned()))?;
        let decl = StreamDecl {
            name: name.trim().to_owned(),
            key: key.trim().to_owned(),
        };
        decl.validate()?;
        Ok(decl)
    }
}

impl StreamDecl {
    /// The metadata store's naming and key rules, so that every declared stream can
    /// be stored.
    pub fn validate(&self) -> Result<(), DeclError> {
        StreamName::parse(&self.name).map_err(|e| DeclError::Name(e.reason))?;
        validate_declared_key(&self.key).map_err(|e| DeclError::Key {
            name: self.name.clone(),
            reason: e.reason,
        })
    }

    /// The file's streams (checked), with the flags' (which win by name); no two
    /// may share a key.
    pub fn merge(file: &[StreamDecl], flags: &[StreamDecl]) -> Result<Vec<StreamDecl>, DeclError> {
        let mut streams = file.to_vec();
        for s in &streams {
            s.validate().map_err(|e| DeclError::InFile(Box::new(e)))?;
        }
        // A flag redeclares a stream of the file by name.
        for s in flags {
            streams.retain(|f| f.name != s.name);
            streams.push(s.clone());
        }
        for (i, a) in streams.iter().enumerate() {
            if let Some(b) = streams[i + 1..].iter().find(|b| b.key == a.key) {
                return Err(DeclError::SameKey(a.name.clone(), b.name.clone()));
            }
        }
        Ok(streams)
    }
}

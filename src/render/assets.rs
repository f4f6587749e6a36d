//! The catalog of avatars, voices and background images: data in `assets/`, embedded in the
//! binary at build time so a deployed server needs no asset directory. Read-only after start.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One listed item: `id`, `name` and whatever else its definition carries.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CatalogItem {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub avatars: Vec<CatalogItem>,
    pub voices: Vec<CatalogItem>,
    pub backgrounds: Vec<CatalogItem>,
}

#[derive(Debug, thiserror::Error)]
#[error("asset file {file} is invalid: {source}")]
pub struct CatalogError {
    file: &'static str,
    source: serde_json::Error,
}

fn parse(file: &'static str, text: &str) -> Result<Vec<CatalogItem>, CatalogError> {
    serde_json::from_str(text).map_err(|source| CatalogError { file, source })
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn embedded() -> Result<Self, CatalogError> {
        Ok(Self {
            avatars: parse("avatars.json", include_str!("../../assets/avatars.json"))?,
            voices: parse("voices.json", include_str!("../../assets/voices.json"))?,
            backgrounds: parse(
                "backgrounds.json",
                include_str!("../../assets/backgrounds.json"),
            )?,
        })
    }

    /// The catalog id of a speech server's voice `name`.
    pub fn http_voice_id(name: &str) -> String {
        format!("http-{name}")
    }

    /// Lists a speech server's voices (`TTS_VOICES`, of `model`) after the built-in ones,
    /// each as [`Self::http_voice_id`] with `"backend": "http"` and the server's `name`.
    pub fn with_http_voices(mut self, names: &[String], model: &str) -> Self {
        for name in names {
            let mut extra = serde_json::Map::new();
            extra.insert("backend".into(), Value::from("http"));
            extra.insert("engine".into(), Value::from("speech-server"));
            extra.insert("model".into(), Value::from(model));
            self.voices.push(CatalogItem {
                id: Self::http_voice_id(name),
                name: name.clone(),
                extra,
            });
        }
        self
    }

    pub fn avatar(&self, id: &str) -> Option<&CatalogItem> {
        self.avatars.iter().find(|a| a.id == id)
    }

    pub fn voice(&self, id: &str) -> Option<&CatalogItem> {
        self.voices.iter().find(|v| v.id == id)
    }

    pub fn background(&self, id: &str) -> Option<&CatalogItem> {
        self.backgrounds.iter().find(|b| b.id == id)
    }

    /// Expressions an avatar supports (`neutral`, `friendly`, `serious`).
    pub fn expressions(&self, avatar: &CatalogItem) -> Vec<String> {
        avatar
            .extra
            .get("expressions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_four_avatars_with_three_expressions_and_voices() {
        let c = Catalog::embedded().expect("assets parse");
        assert!(c.avatars.len() >= 4);
        for a in &c.avatars {
            assert_eq!(c.expressions(a), ["neutral", "friendly", "serious"]);
        }
        assert!(c.voice("en-us-1").is_some());
        assert!(c.background("studio").is_some());
    }
}

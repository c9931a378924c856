//! Conversions from MCP JSON (tools, call results) to agentmcp's own types. Works on the
//! serialised JSON form so no rmcp type leaks and rmcp's enum churn does not matter.

use serde_json::{Map, Value};

use crate::{ContentItem, ToolDef};

/// A tool from `tools/list` JSON.
pub(crate) fn tool_from_json(v: &Value) -> Option<ToolDef> {
    let name = v.get("name")?.as_str()?.to_owned();
    let description = v
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let input_schema = match v.get("inputSchema") {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            let mut m = Map::new();
            m.insert("type".into(), Value::String("object".into()));
            m
        }
    };
    Some(ToolDef {
        name,
        description,
        input_schema,
    })
}

/// Content blocks of a `tools/call` result JSON, and its `isError`.
pub(crate) fn result_from_json(v: &Value) -> (Vec<ContentItem>, bool) {
    let is_error = v.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let items = v
        .get("content")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(content_from_json).collect())
        .unwrap_or_default();
    (items, is_error)
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn content_from_json(v: &Value) -> ContentItem {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or_default();
    match ty {
        "text" => ContentItem::text("text", s(v, "text").unwrap_or_default()),
        "image" | "audio" => ContentItem {
            kind: ty.to_owned(),
            text: None,
            data: Some(s(v, "data").unwrap_or_default()),
            media_type: Some(s(v, "mimeType").unwrap_or_default()),
            uri: None,
        },
        "resource" => {
            let r = v.get("resource").cloned().unwrap_or(Value::Null);
            let uri = s(&r, "uri");
            if let Some(t) = s(&r, "text") {
                ContentItem {
                    uri,
                    media_type: s(&r, "mimeType"),
                    ..ContentItem::text("resource", t)
                }
            } else {
                ContentItem {
                    kind: "resource".into(),
                    text: None,
                    data: s(&r, "blob"),
                    media_type: s(&r, "mimeType"),
                    uri,
                }
            }
        }
        "resource_link" => {
            let uri = s(v, "uri").unwrap_or_default();
            ContentItem {
                uri: Some(uri.clone()),
                media_type: s(v, "mimeType"),
                ..ContentItem::text("resource", uri)
            }
        }
        other => ContentItem::text("text", format!("[unsupported content type: {other}]")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results() {
        let (c, e) = result_from_json(&json!({"content":[
            {"type":"text","text":"hi"},
            {"type":"image","data":"AAA=","mimeType":"image/png"},
            {"type":"audio","data":"BBB=","mimeType":"audio/wav"},
            {"type":"resource","resource":{"uri":"file:///a","text":"body","mimeType":"text/plain"}},
            {"type":"resource_link","uri":"file:///b","name":"b"},
            {"type":"weird"}], "isError": true}));
        assert!(e);
        assert_eq!(c[0].text.as_deref(), Some("hi"));
        assert_eq!(
            (c[1].data.as_deref(), c[1].media_type.as_deref()),
            (Some("AAA="), Some("image/png"))
        );
        assert_eq!(c[2].kind, "audio");
        assert_eq!(
            (c[3].kind.as_str(), c[3].text.as_deref()),
            ("resource", Some("body"))
        );
        assert_eq!(c[4].text.as_deref(), Some("file:///b"));
        assert_eq!(
            c[5].text.as_deref(),
            Some("[unsupported content type: weird]")
        );
        let (c, e) = result_from_json(&json!({}));
        assert!(c.is_empty() && !e);
    }

    #[test]
    fn tool_keeps_empty_properties() {
        let t =
            tool_from_json(&json!({"name":"t","inputSchema":{"type":"object","properties":{}}}))
                .unwrap();
        assert_eq!(
            Value::Object(t.input_schema),
            json!({"type":"object","properties":{}})
        );
    }
}

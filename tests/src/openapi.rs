//! The OpenAPI document as tests use it: its operations, the schema of each response, and a
//! small JSON Schema validator for the subset the document uses (`type` with type arrays
//! for nullable, `properties`, `required`, `additionalProperties`, `items`, `enum`,
//! `const`, `oneOf`/`anyOf`/`allOf`, `minimum`, `minLength`/`maxLength`, `minItems`/`maxItems`, `format` uuid and
//! date-time, `$ref` into the document).
//!
//! Any other keyword in a schema is an error, so the document cannot lean on a rule this
//! validator would silently skip. No crate: the subset is ~150 lines, the full draft 2020-12
//! crates pull in regex engines and network resolvers the tests do not need.

use std::collections::BTreeSet;

use serde_json::Value;

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples", "deprecated"];

/// The parsed document.
pub struct Spec {
    pub doc: Value,
}

/// One operation: upper-case method and path template.
pub type Op = (String, String);

impl Spec {
    /// The document agentd embeds (and serves).
    pub fn embedded() -> Self {
        Self::parse(agentd::OPENAPI_DOCUMENT)
    }

    /// Parses a document.
    pub fn parse(text: &str) -> Self {
        Self {
            doc: serde_json::from_str(text).expect("the OpenAPI document is JSON"),
        }
    }

    /// Every operation, sorted.
    pub fn operations(&self) -> BTreeSet<Op> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    out.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// The operation object.
    pub fn operation(&self, method: &str, path: &str) -> &Value {
        let op = &self.doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the document");
        op
    }

    /// Follows a `$ref` (`#/...`) until a non-reference object.
    pub fn deref<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            v = self.pointer(r);
        }
        v
    }

    fn pointer(&self, r: &str) -> &Value {
        let p = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $refs are supported: {r}"));
        self.doc
            .pointer(p)
            .unwrap_or_else(|| panic!("dangling $ref {r}"))
    }

    /// The documented response of an operation for a status, if any.
    pub fn response(&self, method: &str, path: &str, status: u16) -> Option<&Value> {
        let op = self.operation(method, path);
        op["responses"]
            .get(status.to_string())
            .map(|r| self.deref(r))
    }

    /// The schema of a documented response's `content_type` body.
    pub fn response_schema(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
    ) -> Option<&Value> {
        self.response(method, path, status)?
            .get("content")?
            .get(content_type)?
            .get("schema")
    }

    /// A schema of `components/schemas`.
    pub fn component(&self, name: &str) -> &Value {
        let s = &self.doc["components"]["schemas"][name];
        assert!(s.is_object(), "no component schema {name}");
        s
    }

    /// Validates `value` against `schema`; the errors carry JSON pointers into `value`.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.check(schema, value, "", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(s) = schema.as_object() else {
            match schema {
                Value::Bool(true) => return,
                Value::Bool(false) => return errors.push(format!("{at}: no value is allowed")),
                _ => panic!("a schema must be an object or a boolean: {schema}"),
            }
        };
        for (k, rule) in s {
            match k.as_str() {
                "$ref" => self.check(self.pointer(rule.as_str().expect("$ref")), v, at, errors),
                "type" => {
                    let types: Vec<&str> = match rule {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(a) => a.iter().map(|t| t.as_str().expect("type")).collect(),
                        _ => panic!("bad type {rule}"),
                    };
                    if !types.iter().any(|t| has_type(v, t)) {
                        errors.push(format!("{at}: expected {}, got {v}", types.join(" or ")));
                    }
                }
                "properties" => {
                    if let Some(o) = v.as_object() {
                        for (name, sub) in rule.as_object().expect("properties") {
                            if let Some(pv) = o.get(name) {
                                self.check(sub, pv, &format!("{at}/{name}"), errors);
                            }
                        }
                    }
                }
                "required" => {
                    if let Some(o) = v.as_object() {
                        for name in rule.as_array().expect("required") {
                            let name = name.as_str().expect("required name");
                            if !o.contains_key(name) {
                                errors.push(format!("{at}: missing required property {name:?}"));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(o) = v.as_object() {
                        let known = s.get("properties").and_then(Value::as_object);
                        for (name, pv) in o {
                            if known.is_some_and(|k| k.contains_key(name)) {
                                continue;
                            }
                            match rule {
                                Value::Bool(false) => errors
                                    .push(format!("{at}: property {name:?} is not in the schema")),
                                _ => self.check(rule, pv, &format!("{at}/{name}"), errors),
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(a) = v.as_array() {
                        for (i, item) in a.iter().enumerate() {
                            self.check(rule, item, &format!("{at}/{i}"), errors);
                        }
                    }
                }
                "enum" => {
                    if !rule.as_array().expect("enum").contains(v) {
                        errors.push(format!("{at}: {v} is not one of {rule}"));
                    }
                }
                "const" => {
                    if rule != v {
                        errors.push(format!("{at}: {v} is not {rule}"));
                    }
                }
                "oneOf" | "anyOf" => {
                    let matching = rule
                        .as_array()
                        .expect(k)
                        .iter()
                        .filter(|sub| self.validate(sub, v).is_ok())
                        .count();
                    let ok = if k == "oneOf" {
                        matching == 1
                    } else {
                        matching >= 1
                    };
                    if !ok {
                        errors.push(format!("{at}: {matching} of the {k} schemas match {v}"));
                    }
                }
                "allOf" => {
                    for sub in rule.as_array().expect("allOf") {
                        self.check(sub, v, at, errors);
                    }
                }
                "minimum" => {
                    if let (Some(n), Some(min)) = (v.as_f64(), rule.as_f64())
                        && n < min
                    {
                        errors.push(format!("{at}: {n} < {min}"));
                    }
                }
                "minLength" | "maxLength" => {
                    if let (Some(t), Some(n)) = (v.as_str(), rule.as_u64()) {
                        let len = t.chars().count() as u64;
                        if (k == "minLength" && len < n) || (k == "maxLength" && len > n) {
                            errors.push(format!("{at}: length {len} breaks {k} {n}"));
                        }
                    }
                }
                "minItems" | "maxItems" => {
                    if let (Some(a), Some(n)) = (v.as_array(), rule.as_u64()) {
                        let len = a.len() as u64;
                        if (k == "minItems" && len < n) || (k == "maxItems" && len > n) {
                            errors.push(format!("{at}: {len} items breaks {k} {n}"));
                        }
                    }
                }
                "format" => {
                    if let Some(t) = v.as_str() {
                        let ok = match rule.as_str().expect("format") {
                            "uuid" => uuid::Uuid::parse_str(t).is_ok() && t.len() == 36,
                            "date-time" => is_rfc3339(t),
                            other => panic!("unsupported format {other}"),
                        };
                        if !ok {
                            errors.push(format!("{at}: {t:?} is not a {rule}"));
                        }
                    }
                }
                other if ANNOTATIONS.contains(&other) => {}
                other => panic!("schema keyword {other:?} is not supported by the validator"),
            }
        }
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

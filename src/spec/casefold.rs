//! Go `encoding/json`-like key matching for serde.
//!
//! Go matches JSON object keys to struct fields by exact name first and
//! otherwise case-insensitively. containerd's go-cni sends `runtimeConfig`
//! with Go field names (`"HostPort"`, `"Servers"`), and hand-written
//! conflists use spellings like `"IsGateway"`; the reference plugins accept
//! them, so we must too. [`casefold_from_value`] wraps a `serde_json::Value`
//! in a deserializer that, whenever serde asks for a struct, renames the
//! object's keys to the struct's declared field names, recursively.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// Deserializes `v` into `T` with Go-like key matching: a key equal to a
/// field name is used as is; otherwise a key equal to a field name ignoring
/// ASCII case is renamed to it. When several keys fold to the same field and
/// none matches exactly, the lexically last key wins (Go: the last in the
/// document). Applies to nested structs, `Option`, `Vec` and maps of structs.
/// Limitation: contents of enum variants and `#[serde(flatten)]` fields are
/// matched exactly.
pub fn casefold_from_value<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(CaseFold(v))
}

/// A `Value` whose structs are matched case-insensitively.
struct CaseFold(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for CaseFold {
    type Deserializer = CaseFold;
    fn into_deserializer(self) -> CaseFold {
        self
    }
}

/// Renames the keys of `m` to the matching names in `fields`.
fn fold_keys(m: Map<String, Value>, fields: &[&str]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(m.len());
    let mut folded: Vec<(String, Value)> = Vec::new();
    for (k, v) in m {
        if fields.contains(&k.as_str()) {
            out.push((k, v));
        } else if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
            folded.push(((*f).to_string(), v));
        } else {
            out.push((k, v));
        }
    }
    let exact_len = out.len();
    for (k, v) in folded {
        match out.iter().position(|(ek, _)| *ek == k) {
            // An exact key always wins over a folded one.
            Some(i) if i < exact_len => {}
            // Among folded keys (in map order), the later replaces the earlier.
            Some(i) => out[i].1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

fn visit_object<'de, V: Visitor<'de>>(
    entries: impl Iterator<Item = (String, Value)>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut de = MapDeserializer::new(entries.map(|(k, v)| (k, CaseFold(v))));
    let out = visitor.visit_map(&mut de)?;
    de.end()?;
    Ok(out)
}

fn visit_array<'de, V: Visitor<'de>>(
    items: Vec<Value>,
    visitor: V,
) -> Result<V::Value, serde_json::Error> {
    let mut de = SeqDeserializer::new(items.into_iter().map(CaseFold));
    let out = visitor.visit_seq(&mut de)?;
    de.end()?;
    Ok(out)
}

/// For scalar-expecting methods: containers go through our `deserialize_any`
/// (so nested structs keep folding), scalars are handled by `Value` itself,
/// which keeps serde_json's exact error messages ("invalid type: ...").
macro_rules! forward_scalar {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
            match self.0 {
                v @ (Value::Array(_) | Value::Object(_)) => CaseFold(v).deserialize_any(visitor),
                v => v.$method(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for CaseFold {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Array(a) => visit_array(a, visitor),
            Value::Object(m) => visit_object(m.into_iter(), visitor),
            v => v.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Object(m) => visit_object(fold_keys(m, fields).into_iter(), visitor),
            Value::Array(a) => visit_array(a, visitor),
            v => v.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            v => visitor.visit_some(CaseFold(v)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_any(visitor)
    }

    forward_scalar!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase")]
    struct PortMapping {
        host_port: u16,
        container_port: u16,
        #[serde(default)]
        protocol: String,
        #[serde(rename = "hostIP", default)]
        host_ip: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase")]
    struct Runtime {
        #[serde(default)]
        port_mappings: Vec<PortMapping>,
        #[serde(default)]
        mac: Option<String>,
        #[serde(default)]
        by_name: BTreeMap<String, PortMapping>,
        #[serde(default)]
        nested: Option<Box<Runtime>>,
        #[serde(default)]
        is_gateway: bool,
    }

    #[test]
    fn go_field_names_are_accepted() {
        let v = json!({
            "PortMappings": [{"ContainerPort": 80, "HostIP": "", "HostPort": 8080, "Protocol": "tcp"}],
            "Mac": "aa:bb:cc:dd:ee:ff",
            "BYNAME": {"x": {"hostport": 1, "CONTAINERPORT": 2}},
            "Nested": {"isgateway": true},
        });
        let r: Runtime = casefold_from_value(v).unwrap();
        assert_eq!(
            r.port_mappings,
            vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: Some(String::new()),
            }]
        );
        assert_eq!(r.mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(r.by_name["x"].host_port, 1);
        assert_eq!(r.by_name["x"].container_port, 2);
        assert!(r.nested.unwrap().is_gateway);
        assert!(!r.is_gateway);
    }

    #[test]
    fn exact_name_wins() {
        let v = json!({"isGateway": true, "IsGateway": false, "ISGATEWAY": false});
        let r: Runtime = casefold_from_value(v).unwrap();
        assert!(r.is_gateway);
        let v = json!({"IsGateway": true});
        let r: Runtime = casefold_from_value(v).unwrap();
        assert!(r.is_gateway);
    }

    #[test]
    fn map_keys_are_not_folded() {
        let v = json!({"byName": {"Key": {"hostPort": 1, "containerPort": 2}}});
        let r: Runtime = casefold_from_value(v).unwrap();
        assert!(r.by_name.contains_key("Key"));
    }

    #[test]
    fn wrong_types_are_reported() {
        let v = json!({"portMappings": [{"hostPort": "x", "containerPort": 1}]});
        let e = casefold_from_value::<Runtime>(v).unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
        let v = json!({"portMappings": {"hostPort": 1}});
        assert!(casefold_from_value::<Runtime>(v).is_err());
        let v = json!({"mac": 5});
        assert!(casefold_from_value::<Runtime>(v).is_err());
    }

    #[test]
    fn missing_required_field() {
        let v = json!({"portMappings": [{"hostPort": 1}]});
        let e = casefold_from_value::<Runtime>(v).unwrap_err().to_string();
        assert!(e.contains("containerPort"), "{e}");
    }

    #[test]
    fn plain_values_and_options() {
        let v: Option<Vec<u32>> = casefold_from_value(json!([1, 2])).unwrap();
        assert_eq!(v, Some(vec![1, 2]));
        let v: Option<Vec<u32>> = casefold_from_value(json!(null)).unwrap();
        assert_eq!(v, None);
        let v: Value = casefold_from_value(json!({"A": [1, {"b": null}]})).unwrap();
        assert_eq!(v, json!({"A": [1, {"b": null}]}));
        let v: (u8, String) = casefold_from_value(json!([1, "x"])).unwrap();
        assert_eq!(v, (1, "x".to_string()));
    }
}

//! The DICOM JSON model (PS3.18 F.2) of a parsed data set, as WADO-RS
//! metadata serves it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use serde_json::{Map, Number, Value as Json, json};

/// Binary values longer than this many bytes are bulk data: the metadata
/// leaves them out rather than inlining them.
pub const BULK_DATA_THRESHOLD: usize = 1024;

/// `s` without the padding DICOM puts around values (spaces and NUL).
pub(crate) fn trim_padding(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// The data set as a DICOM JSON object, keyed `GGGGEEEE`. Group lengths
/// and the file meta group are left out, as the model asks.
pub(crate) fn to_dicom_json(object: &InMemDicomObject) -> Json {
    let mut map = Map::new();
    for element in object.iter() {
        let tag = element.header().tag;
        if tag.0 == 0x0002 || tag.1 == 0x0000 {
            continue;
        }
        if let Some(attribute) = attribute(element.vr(), element.value()) {
            map.insert(format!("{:04X}{:04X}", tag.0, tag.1), attribute);
        }
    }
    Json::Object(map)
}

/// One attribute, or `None` for bulk data.
fn attribute(
    vr: VR,
    value: &Value<InMemDicomObject, dicom_object::mem::InMemFragment>,
) -> Option<Json> {
    let mut attribute = Map::new();
    attribute.insert("vr".into(), json!(vr.to_string()));

    let primitive = match value {
        Value::Sequence(sequence) => {
            let items = sequence.items().iter().map(to_dicom_json).collect();
            attribute.insert("Value".into(), Json::Array(items));
            return Some(Json::Object(attribute));
        }
        Value::PixelSequence(_) => return None,
        Value::Primitive(primitive) => primitive,
    };

    if is_binary(vr) {
        let bytes = primitive.to_bytes();
        if bytes.len() > BULK_DATA_THRESHOLD {
            return None;
        }
        if !bytes.is_empty() {
            attribute.insert("InlineBinary".into(), json!(STANDARD.encode(&bytes)));
        }
        return Some(Json::Object(attribute));
    }

    let values = values(vr, primitive);
    if !values.is_empty() && values.iter().any(|v| !v.is_null()) {
        attribute.insert("Value".into(), Json::Array(values));
    }
    Some(Json::Object(attribute))
}

/// The values of a non-binary attribute in the JSON type its VR asks for.
fn values(vr: VR, primitive: &PrimitiveValue) -> Vec<Json> {
    if let PrimitiveValue::Tags(tags) = primitive {
        return tags
            .iter()
            .map(|Tag(g, e)| json!(format!("{g:04X}{e:04X}")))
            .collect();
    }
    if matches!(primitive, PrimitiveValue::Empty) {
        return Vec::new();
    }

    let strings = primitive.to_multi_str();
    strings
        .iter()
        .map(|raw| {
            let s = trim_padding(raw);
            if s.is_empty() {
                return Json::Null;
            }
            match vr {
                VR::PN => person_name(s),
                VR::IS
                | VR::DS
                | VR::SL
                | VR::SS
                | VR::SV
                | VR::UL
                | VR::US
                | VR::UV
                | VR::FL
                | VR::FD => number(s),
                _ => json!(s),
            }
        })
        .collect()
}

/// A person name as its alphabetic, ideographic and phonetic groups.
fn person_name(s: &str) -> Json {
    let mut name = Map::new();
    for (group, key) in s.split('=').zip(["Alphabetic", "Ideographic", "Phonetic"]) {
        if !group.is_empty() {
            name.insert(key.into(), json!(group));
        }
    }
    Json::Object(name)
}

/// A numeric string as a JSON number; kept as text when it is not one,
/// so a sloppy writer's value is still shown rather than lost.
fn number(s: &str) -> Json {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return json!(n);
    }
    if let Ok(n) = s.parse::<u64>() {
        return json!(n);
    }
    match s.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Json::Number(n),
        None => json!(s),
    }
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

//! Parses a pre-scanned header with dicom-object and picks out the indexed
//! attributes.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::error::{DicomError, DicomResult};
use super::scan::{self, Scanned, Syntax};
use super::{InstanceHeader, is_valid_uid, json};

/// Parses the pre-scanned data set with dicom-object.
pub(crate) fn parse(scanned: &Scanned<'_>) -> DicomResult<InMemDicomObject> {
    // The pre-scan already inflated a deflated data set, and every other
    // syntax's data set is one of the three native encodings.
    let dataset_uid = match scanned.syntax {
        Syntax::ImplicitLittle => scan::IMPLICIT_VR_LITTLE_ENDIAN,
        Syntax::ExplicitBig => scan::EXPLICIT_VR_BIG_ENDIAN,
        _ => scan::EXPLICIT_VR_LITTLE_ENDIAN,
    };
    let ts = TransferSyntaxRegistry
        .get(dataset_uid)
        .ok_or_else(|| DicomError::Parse {
            step: "look up transfer syntax",
            message: dataset_uid.to_string(),
        })?;
    InMemDicomObject::read_dataset_with_ts(&scanned.dataset[..], ts).map_err(|e| {
        DicomError::Parse {
            step: "parse data set",
            message: e.to_string(),
        }
    })
}

pub(crate) fn extract(scanned: Scanned<'_>) -> DicomResult<InstanceHeader> {
    let object = parse(&scanned)?;
    let text = |tag: Tag| text(&object, tag);
    let meta = &scanned.meta;

    let sop_class_uid = uid(
        text(tags::SOP_CLASS_UID).or_else(|| meta.media_storage_sop_class_uid.clone()),
        "SOPClassUID",
    )?;
    let sop_instance_uid = uid(
        text(tags::SOP_INSTANCE_UID).or_else(|| meta.media_storage_sop_instance_uid.clone()),
        "SOPInstanceUID",
    )?;
    let study_instance_uid = uid(text(tags::STUDY_INSTANCE_UID), "StudyInstanceUID")?;
    let series_instance_uid = uid(text(tags::SERIES_INSTANCE_UID), "SeriesInstanceUID")?;
    if !is_valid_uid(&scanned.transfer_syntax_uid) {
        return Err(DicomError::InvalidUid {
            name: "TransferSyntaxUID",
        });
    }

    Ok(InstanceHeader {
        transfer_syntax_uid: scanned.transfer_syntax_uid.clone(),
        sop_class_uid,
        sop_instance_uid,
        study_instance_uid,
        series_instance_uid,
        patient_id: text(tags::PATIENT_ID),
        patient_name: text(tags::PATIENT_NAME),
        patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
        patient_sex: text(tags::PATIENT_SEX),
        study_date: text(tags::STUDY_DATE),
        study_time: text(tags::STUDY_TIME),
        accession_number: text(tags::ACCESSION_NUMBER),
        study_description: text(tags::STUDY_DESCRIPTION),
        series_description: text(tags::SERIES_DESCRIPTION),
        modality: text(tags::MODALITY),
        body_part_examined: text(tags::BODY_PART_EXAMINED),
        series_number: number(&object, tags::SERIES_NUMBER),
        instance_number: number(&object, tags::INSTANCE_NUMBER),
        number_of_frames: number(&object, tags::NUMBER_OF_FRAMES),
        rows: number(&object, tags::ROWS),
        columns: number(&object, tags::COLUMNS),
        header_len: scanned.header_len,
        pixel_data_offset: scanned.pixel_data_offset,
    })
}

/// A text attribute without padding; `None` when absent or empty.
fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = object.get(tag)?.to_str().ok()?;
    let trimmed = json::trim_padding(&value);
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// An integer attribute (IS or binary); `None` when absent or not a
/// number of type `T`, since a malformed optional number is no reason to
/// refuse a file.
fn number<T: std::str::FromStr>(object: &InMemDicomObject, tag: Tag) -> Option<T> {
    json::trim_padding(&object.get(tag)?.to_str().ok()?)
        .parse()
        .ok()
}

/// A required UID attribute, validated.
fn uid(value: Option<String>, name: &'static str) -> DicomResult<String> {
    let value = value.ok_or(DicomError::MissingAttribute { name })?;
    if !is_valid_uid(&value) {
        return Err(DicomError::InvalidUid { name });
    }
    Ok(value)
}

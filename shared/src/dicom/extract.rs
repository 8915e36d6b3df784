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

/// Longest date or time the index takes (DA is 8 characters, TM 16, DT
/// 26): these form the study list's sort key, which DynamoDB caps at
/// 1,024 bytes.
const MAX_DATE_TIME_BYTES: usize = 64;

/// Longest other indexed text (LO is 64 characters, a PN component group
/// 64): sixteen study fields at this size stay far inside an item's
/// 400 KB.
const MAX_TEXT_BYTES: usize = 1024;

pub(crate) fn extract(scanned: Scanned<'_>) -> DicomResult<InstanceHeader> {
    let object = parse(&scanned)?;
    let text = |tag: Tag| text(&object, tag);
    let capped = |tag: Tag, name: &'static str, max: usize| -> DicomResult<Option<String>> {
        match text(tag) {
            Some(v) if v.len() > max => Err(DicomError::ValueTooLong {
                name,
                len: v.len(),
                max,
            }),
            v => Ok(v),
        }
    };
    let field = |tag: Tag, name: &'static str| capped(tag, name, MAX_TEXT_BYTES);
    let date_time = |tag: Tag, name: &'static str| capped(tag, name, MAX_DATE_TIME_BYTES);
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
        patient_id: field(tags::PATIENT_ID, "PatientID")?,
        patient_name: field(tags::PATIENT_NAME, "PatientName")?,
        patient_birth_date: date_time(tags::PATIENT_BIRTH_DATE, "PatientBirthDate")?,
        patient_sex: field(tags::PATIENT_SEX, "PatientSex")?,
        study_date: date_time(tags::STUDY_DATE, "StudyDate")?,
        study_time: date_time(tags::STUDY_TIME, "StudyTime")?,
        accession_number: field(tags::ACCESSION_NUMBER, "AccessionNumber")?,
        study_description: field(tags::STUDY_DESCRIPTION, "StudyDescription")?,
        series_description: field(tags::SERIES_DESCRIPTION, "SeriesDescription")?,
        modality: field(tags::MODALITY, "Modality")?,
        body_part_examined: field(tags::BODY_PART_EXAMINED, "BodyPartExamined")?,
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

//! DICOM header indexing: a guarded reader that takes the first bytes of
//! an object and returns the attributes the archive indexes, or asks for
//! more bytes, or refuses the file with a reason fit for a quarantine
//! record.
//!
//! The raw bytes are pre-scanned element by element before dicom-object
//! parses them, because dicom-object trusts declared lengths: memory stays
//! bounded by [`HeaderLimits`] whatever a file declares.
//!
//! ```no_run
//! # use pacs_shared::dicom::{read_header, HeaderLimits, HeaderRead};
//! # fn fetch(_: u64) -> Vec<u8> { Vec::new() }
//! let object_size = 10_000_000;
//! let limits = HeaderLimits::default();
//! let mut prefix = fetch(64 * 1024);
//! let header = loop {
//!     match read_header(&prefix, object_size, &limits)? {
//!         HeaderRead::Complete(header) => break header,
//!         HeaderRead::NeedMore { until } => prefix = fetch(until),
//!     }
//! };
//! # Ok::<(), pacs_shared::dicom::DicomError>(())
//! ```

mod error;
mod extract;
mod json;
mod scan;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use error::{DicomError, DicomResult};
pub use json::BULK_DATA_THRESHOLD;

/// Caps on what a header may cost. The defaults admit every header a
/// modality writes in practice and bound a hostile file to a few tens of
/// MiB of memory.
///
/// Files whose non-pixel elements exceed these caps (for instance an
/// Encapsulated PDF of several MiB, whose document sits in an element
/// before where Pixel Data would be) are refused with
/// [`DicomError::ElementTooLarge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Bytes of the file before Pixel Data (or of the inflated data set).
    pub max_header_bytes: u64,
    /// Length of any single element value before Pixel Data.
    pub max_element_len: u32,
    /// Nesting depth of sequences (a top-level sequence has depth 1).
    pub max_sequence_depth: usize,
    /// Sequence items (and nested pixel fragments) in the whole header.
    pub max_items: usize,
    /// Element, item and delimiter headers in the whole header.
    pub max_elements: usize,
    /// Values (a multi-valued element counts each) in the whole header,
    /// since the parser allocates each one.
    pub max_values: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_bytes: 4 * 1024 * 1024,
            max_element_len: 1024 * 1024,
            max_sequence_depth: 16,
            max_items: 20_000,
            max_elements: 100_000,
            max_values: 500_000,
        }
    }
}

/// What [`read_header`] made of the bytes it was given.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderRead {
    /// The whole header (up to, not including, Pixel Data or end of file)
    /// was in `prefix`.
    Complete(InstanceHeader),
    /// The header continues past `prefix`; fetch at least up to byte
    /// `until` (exclusive) and call again with the longer prefix.
    NeedMore {
        /// File offset to fetch up to; never past the object's size.
        until: u64,
    },
}

/// The attributes of one instance that the archive indexes.
///
/// Text attributes are trimmed of their padding (spaces, NUL) and are
/// otherwise exactly as the file holds them; an empty one is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHeader {
    /// Transfer syntax from the file meta group, or the one inferred for a
    /// file without it.
    pub transfer_syntax_uid: String,
    /// SOP Class UID (0008,0016), else Media Storage SOP Class UID.
    pub sop_class_uid: String,
    /// SOP Instance UID (0008,0018), else Media Storage SOP Instance UID.
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Patient ID (0010,0020).
    pub patient_id: Option<String>,
    /// Patient's Name (0010,0010), with its `^` and `=` separators.
    pub patient_name: Option<String>,
    /// Patient's Birth Date (0010,0030), `YYYYMMDD`.
    pub patient_birth_date: Option<String>,
    /// Patient's Sex (0010,0040).
    pub patient_sex: Option<String>,
    /// Study Date (0008,0020), `YYYYMMDD`.
    pub study_date: Option<String>,
    /// Study Time (0008,0030).
    pub study_time: Option<String>,
    /// Accession Number (0008,0050).
    pub accession_number: Option<String>,
    /// Study Description (0008,1030).
    pub study_description: Option<String>,
    /// Series Description (0008,103E).
    pub series_description: Option<String>,
    /// Modality (0008,0060).
    pub modality: Option<String>,
    /// Body Part Examined (0018,0015).
    pub body_part_examined: Option<String>,
    /// Series Number (0020,0011); `None` when absent or not an integer.
    pub series_number: Option<i32>,
    /// Instance Number (0020,0013); `None` when absent or not an integer.
    pub instance_number: Option<i32>,
    /// Number of Frames (0028,0008).
    pub number_of_frames: Option<u32>,
    /// Rows (0028,0010).
    pub rows: Option<u16>,
    /// Columns (0028,0011).
    pub columns: Option<u16>,
    /// Bytes of the file up to Pixel Data, or the whole file without it.
    /// For a deflated data set: the compressed bytes inflated to reach it.
    pub header_len: u64,
    /// File offset of the Pixel Data element, when the file has one and
    /// is not deflated.
    pub pixel_data_offset: Option<u64>,
}

/// Reads the header of an object of `object_size` bytes from its first
/// bytes, `prefix`.
///
/// Accepts Part 10 files, a file meta group without preamble, and a bare
/// data set starting at group 0008 (implicit or explicit VR inferred);
/// every transfer syntax whose data set is native or deflated.
///
/// # Errors
///
/// A [`DicomError`] naming the step that refused the file; none is
/// retryable.
pub fn read_header(
    prefix: &[u8],
    object_size: u64,
    limits: &HeaderLimits,
) -> Result<HeaderRead, DicomError> {
    match scan::scan(prefix, object_size, limits)? {
        scan::Scan::NeedMore(until) => Ok(HeaderRead::NeedMore { until }),
        scan::Scan::Done(scanned) => extract::extract(scanned).map(HeaderRead::Complete),
    }
}

/// What [`read_metadata`] made of the bytes it was given.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataRead {
    /// The data set as DICOM JSON (PS3.18 F.2) for WADO-RS metadata,
    /// without the file meta group and without binary values over
    /// [`BULK_DATA_THRESHOLD`] bytes, which are left out entirely.
    Complete(serde_json::Value),
    /// As [`HeaderRead::NeedMore`].
    NeedMore { until: u64 },
}

/// Reads the header of an object as DICOM JSON, under the same guards and
/// with the same calling pattern as [`read_header`]. Indexing does not
/// need it; WADO-RS metadata reads it from the stored object.
///
/// # Errors
///
/// As [`read_header`].
pub fn read_metadata(
    prefix: &[u8],
    object_size: u64,
    limits: &HeaderLimits,
) -> Result<MetadataRead, DicomError> {
    match scan::scan(prefix, object_size, limits)? {
        scan::Scan::NeedMore(until) => Ok(MetadataRead::NeedMore { until }),
        scan::Scan::Done(scanned) => {
            let object = extract::parse(&scanned)?;
            Ok(MetadataRead::Complete(json::to_dicom_json(&object)))
        }
    }
}

/// Whether `uid` is a valid DICOM UID: 1 to 64 characters, components of
/// digits separated by single dots, no component with a leading zero
/// other than `0` itself.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'))
        })
}

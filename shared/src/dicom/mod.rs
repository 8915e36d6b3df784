//! Stand-in for the DICOM header reader, with its interface only; replaced
//! by the real reader on merge.

/// Bounds on what the reader may allocate.
#[derive(Debug, Clone)]
pub struct HeaderLimits {
    pub max_header_bytes: u64,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The outcome of one attempt to read a header from a prefix.
#[derive(Debug)]
pub enum HeaderRead {
    /// The header is complete.
    Complete(InstanceHeader),
    /// The prefix ended inside the header.
    NeedMore { until: u64 },
}

/// The attributes the archive indexes.
#[derive(Debug, Clone, Default)]
pub struct InstanceHeader {
    pub transfer_syntax_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub series_description: Option<String>,
    pub modality: Option<String>,
    pub body_part_examined: Option<String>,
    pub series_number: Option<i32>,
    pub instance_number: Option<i32>,
    pub number_of_frames: Option<u32>,
    pub rows: Option<u16>,
    pub columns: Option<u16>,
    pub header_len: u64,
    pub metadata: serde_json::Value,
}

/// A header that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("not DICOM")]
pub struct DicomError;

impl DicomError {
    /// A reason free of patient data.
    pub fn reason(&self) -> String {
        "not a DICOM file".into()
    }
}

/// Reads the header from `prefix`.
pub fn read_header(
    _prefix: &[u8],
    _object_size: u64,
    _limits: &HeaderLimits,
) -> Result<HeaderRead, DicomError> {
    Err(DicomError)
}

//! Why a DICOM header could not be read, one variant per failing step.
//!
//! Every variant carries tags and numbers only, never a value from the
//! file, so an error can be logged and stored as a quarantine reason.

use dicom_core::Tag;

/// Result of a DICOM header step.
pub type DicomResult<T> = Result<T, DicomError>;

/// A DICOM header that could not be read, and the step that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DicomError {
    /// Neither a Part 10 file (`DICM` at 128 or 0), nor a file meta group,
    /// nor a raw data set starting with group 0008.
    #[error("not a DICOM file: {detail}")]
    NotDicom {
        /// What was found instead, in structural terms.
        detail: &'static str,
    },

    /// The object ends before a structure it starts.
    #[error("file is truncated: {needed} bytes needed, {available} exist")]
    Truncated {
        /// Offset the structure needs to reach.
        needed: u64,
        /// Bytes that exist.
        available: u64,
    },

    /// The preamble starts like a Windows or Linux executable.
    #[error("preamble holds an executable header ({kind})")]
    ExecutablePreamble {
        /// `MZ` or `ELF`.
        kind: &'static str,
    },

    /// An element declares a value longer than the bytes that exist.
    #[error("element {tag} declares {length} bytes, past the end of the {object_size}-byte object")]
    LengthBeyondObject {
        /// The element.
        tag: Tag,
        /// Its declared length.
        length: u64,
        /// Bytes in the object.
        object_size: u64,
    },

    /// An element before Pixel Data is longer than the element cap.
    #[error("element {tag} declares {length} bytes, more than the cap of {cap}")]
    ElementTooLarge {
        /// The element.
        tag: Tag,
        /// Its declared length.
        length: u64,
        /// The cap from [`HeaderLimits`](super::HeaderLimits).
        cap: u64,
    },

    /// Sequences nest deeper than the cap.
    #[error("sequences nest {depth} deep, more than the cap of {cap}")]
    SequenceTooDeep {
        /// Depth reached.
        depth: usize,
        /// The cap.
        cap: usize,
    },

    /// The header holds more sequence items than the cap.
    #[error("header holds more than {cap} sequence items")]
    TooManyItems {
        /// The cap.
        cap: usize,
    },

    /// The header holds more elements than the cap.
    #[error("header holds more than {cap} elements")]
    TooManyElements {
        /// The cap.
        cap: usize,
    },

    /// The header holds more values than the cap.
    #[error("header holds more than {cap} values")]
    TooManyValues {
        /// The cap.
        cap: usize,
    },

    /// The header (everything before Pixel Data) is longer than the cap.
    #[error("header is longer than the cap of {cap} bytes")]
    HeaderTooLarge {
        /// The cap.
        cap: u64,
    },

    /// An undefined-length sequence or item has no delimiter before the
    /// data ends.
    #[error("undefined-length {tag} has no delimiter before the end of data")]
    MissingDelimiter {
        /// The sequence, item or fragment sequence left open.
        tag: Tag,
    },

    /// A structure is malformed where the pre-scan walks it.
    #[error("malformed {tag} at byte {offset}: {problem}")]
    Malformed {
        /// The element or item.
        tag: Tag,
        /// Its offset in the (inflated) stream.
        offset: u64,
        /// What is wrong, in structural terms.
        problem: &'static str,
    },

    /// A deflated data set does not inflate.
    #[error("deflated data set does not inflate")]
    Inflate,

    /// A required attribute is absent or empty.
    #[error("required attribute {name} is missing")]
    MissingAttribute {
        /// Keyword of the attribute, e.g. `StudyInstanceUID`.
        name: &'static str,
    },

    /// A UID attribute is not a valid UID.
    #[error("{name} is not a valid UID")]
    InvalidUid {
        /// Keyword of the attribute.
        name: &'static str,
    },

    /// An indexed text attribute is longer than the index takes. DICOM's
    /// own limits are far lower (64 characters for a name component
    /// group, 8 for a date); the caps leave room for files that stretch
    /// them, while keeping every study item and sort key inside
    /// DynamoDB's limits.
    #[error("{name} is {len} bytes long; the index takes at most {max}")]
    ValueTooLong {
        /// Keyword of the attribute.
        name: &'static str,
        /// Bytes in the value, padding removed.
        len: usize,
        /// The cap for this attribute.
        max: usize,
    },

    /// A numeric attribute does not parse as the number it must be.
    #[error("{name} is not a valid number")]
    InvalidNumber {
        /// Keyword of the attribute.
        name: &'static str,
    },

    /// dicom-object refused the bytes the pre-scan accepted.
    #[error("{step} failed: {message}")]
    Parse {
        /// The parsing step, e.g. `parse data set`.
        step: &'static str,
        /// The parser's message. It may quote values, so it is not part of
        /// [`DicomError::reason`].
        message: String,
    },
}

impl DicomError {
    /// A short reason for the quarantine record and the upload status.
    ///
    /// It names tags, offsets and sizes only, never a value from the file.
    /// A parser message may quote values, so `Parse` gives its step only.
    pub fn reason(&self) -> String {
        match self {
            DicomError::Parse { step, .. } => format!("{step} failed"),
            other => other.to_string(),
        }
    }

    /// Whether reading again could succeed. Always false: every variant
    /// is about the content of the file.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A stable PascalCase code for metrics and records.
    pub fn code(&self) -> &'static str {
        match self {
            DicomError::NotDicom { .. } => "NotDicom",
            DicomError::Truncated { .. } => "Truncated",
            DicomError::ExecutablePreamble { .. } => "ExecutablePreamble",
            DicomError::LengthBeyondObject { .. } => "LengthBeyondObject",
            DicomError::ElementTooLarge { .. } => "ElementTooLarge",
            DicomError::SequenceTooDeep { .. } => "SequenceTooDeep",
            DicomError::TooManyItems { .. } => "TooManyItems",
            DicomError::TooManyElements { .. } => "TooManyElements",
            DicomError::TooManyValues { .. } => "TooManyValues",
            DicomError::HeaderTooLarge { .. } => "HeaderTooLarge",
            DicomError::MissingDelimiter { .. } => "MissingDelimiter",
            DicomError::Malformed { .. } => "Malformed",
            DicomError::Inflate => "Inflate",
            DicomError::MissingAttribute { .. } => "MissingAttribute",
            DicomError::InvalidUid { .. } => "InvalidUid",
            DicomError::ValueTooLong { .. } => "ValueTooLong",
            DicomError::InvalidNumber { .. } => "InvalidNumber",
            DicomError::Parse { .. } => "Parse",
        }
    }
}

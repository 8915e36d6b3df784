//! DICOM files written byte by byte for tests and the bench: valid
//! instances in the native and deflated transfer syntaxes, with or without
//! preamble and meta group, and hostile files that lie about their sizes,
//! nest too deep or carry an executable preamble.
//!
//! ```
//! use pacs_testkit::dicom::{DicomFixture, Layout, Modality, TransferSyntax};
//! let ct = DicomFixture::new(Modality::Ct)
//!     .transfer_syntax(TransferSyntax::ImplicitVrLittleEndian)
//!     .layout(Layout::NoPreamble)
//!     .frames(4);
//! let bytes = ct.to_bytes();
//! assert_eq!(&bytes[..2], &[0x02, 0x00]);
//! ```

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::DeflateEncoder;

/// Implementation Class UID written into every fixture's meta group.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.307190240571284953829366893376254398061";
/// Implementation Version Name written into every fixture's meta group.
pub const IMPLEMENTATION_VERSION_NAME: &str = "PACSHUB_FIXTURE";

/// The transfer syntaxes a fixture can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferSyntax {
    /// 1.2.840.10008.1.2.1
    ExplicitVrLittleEndian,
    /// 1.2.840.10008.1.2
    ImplicitVrLittleEndian,
    /// 1.2.840.10008.1.2.2 (retired, still written by older modalities)
    ExplicitVrBigEndian,
    /// 1.2.840.10008.1.2.1.99: the data set after the meta group is a raw
    /// deflate stream.
    DeflatedExplicitVrLittleEndian,
    /// 1.2.840.10008.1.2.4.50: encapsulated pixel data, one fragment per
    /// frame holding JPEG markers (SOI ... EOI), not a decodable image.
    JpegBaseline,
}

impl TransferSyntax {
    /// Every syntax, in a fixed order.
    pub const ALL: [TransferSyntax; 5] = [
        TransferSyntax::ExplicitVrLittleEndian,
        TransferSyntax::ImplicitVrLittleEndian,
        TransferSyntax::ExplicitVrBigEndian,
        TransferSyntax::DeflatedExplicitVrLittleEndian,
        TransferSyntax::JpegBaseline,
    ];

    /// The transfer syntax UID.
    pub const fn uid(self) -> &'static str {
        match self {
            TransferSyntax::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            TransferSyntax::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
            TransferSyntax::ExplicitVrBigEndian => "1.2.840.10008.1.2.2",
            TransferSyntax::DeflatedExplicitVrLittleEndian => "1.2.840.10008.1.2.1.99",
            TransferSyntax::JpegBaseline => "1.2.840.10008.1.2.4.50",
        }
    }

    fn explicit(self) -> bool {
        self != TransferSyntax::ImplicitVrLittleEndian
    }

    fn big_endian(self) -> bool {
        self == TransferSyntax::ExplicitVrBigEndian
    }
}

/// Where the data set starts in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// 128-byte preamble, `DICM`, file meta group, data set.
    Part10,
    /// File meta group at byte 0, then the data set.
    NoPreamble,
    /// The bare data set, as some modalities write it; readers infer the
    /// transfer syntax, so use implicit or explicit VR little endian.
    DatasetOnly,
}

/// Modalities with the SOP classes their fixtures carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// Computed tomography.
    Ct,
    /// Magnetic resonance.
    Mr,
    /// Computed radiography.
    Cr,
    /// Digital radiography.
    Dx,
    /// Ultrasound.
    Us,
}

impl Modality {
    /// The Modality (0008,0060) code.
    pub const fn code(self) -> &'static str {
        match self {
            Modality::Ct => "CT",
            Modality::Mr => "MR",
            Modality::Cr => "CR",
            Modality::Dx => "DX",
            Modality::Us => "US",
        }
    }

    /// The storage SOP class for single- or multi-frame images.
    pub const fn sop_class_uid(self, multi_frame: bool) -> &'static str {
        match (self, multi_frame) {
            (Modality::Ct, false) => "1.2.840.10008.5.1.4.1.1.2",
            (Modality::Ct, true) => "1.2.840.10008.5.1.4.1.1.2.1",
            (Modality::Mr, false) => "1.2.840.10008.5.1.4.1.1.4",
            (Modality::Mr, true) => "1.2.840.10008.5.1.4.1.1.4.1",
            (Modality::Cr, _) => "1.2.840.10008.5.1.4.1.1.1",
            (Modality::Dx, _) => "1.2.840.10008.5.1.4.1.1.1.1",
            (Modality::Us, false) => "1.2.840.10008.5.1.4.1.1.6.1",
            (Modality::Us, true) => "1.2.840.10008.5.1.4.1.1.3.1",
        }
    }
}

/// A fresh UID under the 2.25 (UUID-derived) root.
pub fn new_uid() -> String {
    format!("2.25.{}", rand::random::<u128>() | 1)
}

/// How a fixture is encoded, as opposed to what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureOptions {
    /// Transfer syntax of the data set.
    pub transfer_syntax: TransferSyntax,
    /// Preamble and meta group, or neither.
    pub layout: Layout,
    /// The first bytes of the 128-byte preamble (the rest are zero).
    pub preamble: Vec<u8>,
    /// Pixel Data length in bytes instead of rows × columns × frames ×
    /// bytes per sample; rounded up to even. For files of a given size.
    pub pixel_data_len: Option<usize>,
    /// Whether to write Pixel Data at all.
    pub pixel_data: bool,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        FixtureOptions {
            transfer_syntax: TransferSyntax::ExplicitVrLittleEndian,
            layout: Layout::Part10,
            preamble: Vec::new(),
            pixel_data_len: None,
            pixel_data: true,
        }
    }
}

/// One DICOM instance to write: the attributes it holds and how to
/// encode it. Fields are public so tests compare them with what a reader
/// returns; `None` attributes are left out of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomFixture {
    /// Encoding.
    pub options: FixtureOptions,
    /// Modality (0008,0060).
    pub modality: Modality,
    /// SOP Class UID (0008,0016), also in the meta group.
    pub sop_class_uid: String,
    /// SOP Instance UID (0008,0018), also in the meta group.
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Patient ID (0010,0020).
    pub patient_id: Option<String>,
    /// Patient's Name (0010,0010).
    pub patient_name: Option<String>,
    /// Patient's Birth Date (0010,0030).
    pub patient_birth_date: Option<String>,
    /// Patient's Sex (0010,0040).
    pub patient_sex: Option<String>,
    /// Study Date (0008,0020).
    pub study_date: Option<String>,
    /// Study Time (0008,0030).
    pub study_time: Option<String>,
    /// Accession Number (0008,0050).
    pub accession_number: Option<String>,
    /// Study Description (0008,1030).
    pub study_description: Option<String>,
    /// Series Description (0008,103E).
    pub series_description: Option<String>,
    /// Body Part Examined (0018,0015).
    pub body_part_examined: Option<String>,
    /// Series Number (0020,0011).
    pub series_number: Option<i32>,
    /// Instance Number (0020,0013).
    pub instance_number: Option<i32>,
    /// Number of Frames (0028,0008); written only when above 1.
    pub number_of_frames: u32,
    /// Rows (0028,0010).
    pub rows: u16,
    /// Columns (0028,0011).
    pub columns: u16,
}

impl DicomFixture {
    /// A single-frame 128 × 128 instance of `modality` in a new study and
    /// series, with realistic patient and study attributes.
    pub fn new(modality: Modality) -> Self {
        let (study, series, body_part) = match modality {
            Modality::Ct => ("CT CHEST W/O CONTRAST", "AXIAL 2.5MM", "CHEST"),
            Modality::Mr => ("MRI BRAIN WITH AND WITHOUT CONTRAST", "AX T2 FLAIR", "HEAD"),
            Modality::Cr => ("XR CHEST 2 VIEWS", "PA", "CHEST"),
            Modality::Dx => ("XR KNEE 3 VIEWS LEFT", "LAT", "KNEE"),
            Modality::Us => ("US ABDOMEN COMPLETE", "LIVER", "ABDOMEN"),
        };
        DicomFixture {
            options: FixtureOptions::default(),
            modality,
            sop_class_uid: modality.sop_class_uid(false).to_string(),
            sop_instance_uid: new_uid(),
            study_instance_uid: new_uid(),
            series_instance_uid: new_uid(),
            patient_id: Some("MRN00412345".into()),
            patient_name: Some("DOE^JANE".into()),
            patient_birth_date: Some("19750314".into()),
            patient_sex: Some("F".into()),
            study_date: Some("20240611".into()),
            study_time: Some("142305.123".into()),
            accession_number: Some("ACC24061100017".into()),
            study_description: Some(study.into()),
            series_description: Some(series.into()),
            body_part_examined: Some(body_part.into()),
            series_number: Some(2),
            instance_number: Some(1),
            number_of_frames: 1,
            rows: 128,
            columns: 128,
        }
    }

    /// A CT instance; see [`DicomFixture::new`].
    pub fn ct() -> Self {
        Self::new(Modality::Ct)
    }

    /// The next instance of the same series: a new SOP Instance UID and
    /// the next Instance Number.
    pub fn next_instance(&self) -> Self {
        let mut next = self.clone();
        next.sop_instance_uid = new_uid();
        next.instance_number = self.instance_number.map(|n| n + 1);
        next
    }

    /// Sets the transfer syntax.
    pub fn transfer_syntax(mut self, ts: TransferSyntax) -> Self {
        self.options.transfer_syntax = ts;
        self
    }

    /// Sets the layout (preamble and meta group or not).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.options.layout = layout;
        self
    }

    /// Sets the number of frames; above 1 also picks the modality's
    /// multi-frame SOP class.
    pub fn frames(mut self, frames: u32) -> Self {
        self.number_of_frames = frames.max(1);
        self.sop_class_uid = self.modality.sop_class_uid(frames > 1).to_string();
        self
    }

    /// Sets rows and columns.
    pub fn size(mut self, rows: u16, columns: u16) -> Self {
        self.rows = rows;
        self.columns = columns;
        self
    }

    /// Sets the Pixel Data length in bytes, for files of a chosen size.
    pub fn pixel_data_len(mut self, len: usize) -> Self {
        self.options.pixel_data_len = Some(len);
        self
    }

    /// Sets the patient: ID, name (`FAMILY^GIVEN`), birth date, sex.
    pub fn patient(mut self, id: &str, name: &str, birth_date: &str, sex: &str) -> Self {
        self.patient_id = Some(id.into());
        self.patient_name = Some(name.into());
        self.patient_birth_date = Some(birth_date.into());
        self.patient_sex = Some(sex.into());
        self
    }

    /// Sets the study and series UIDs.
    pub fn in_series(mut self, study_instance_uid: &str, series_instance_uid: &str) -> Self {
        self.study_instance_uid = study_instance_uid.into();
        self.series_instance_uid = series_instance_uid.into();
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(&[])
    }

    /// Writes the file to `path`.
    pub fn write_to(&self, path: &Path) -> std::io::Result<u64> {
        let bytes = self.to_bytes();
        std::fs::write(path, &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Encodes the file, with `tail` (already encoded elements) after the
    /// attributes and before Pixel Data.
    fn encode(&self, tail: &[u8]) -> Vec<u8> {
        let ts = self.options.transfer_syntax;
        let mut dataset = Encoder::new(ts.explicit(), ts.big_endian());
        for element in self.elements() {
            dataset.element(&element);
        }
        dataset.buf.extend_from_slice(tail);
        if self.options.pixel_data {
            self.pixel_data(&mut dataset);
        }
        let mut dataset = dataset.buf;
        if ts == TransferSyntax::DeflatedExplicitVrLittleEndian {
            let mut deflater = DeflateEncoder::new(Vec::new(), Compression::fast());
            deflater.write_all(&dataset).expect("deflate to memory");
            dataset = deflater.finish().expect("deflate to memory");
        }

        let mut file = Vec::with_capacity(dataset.len() + 512);
        if self.options.layout == Layout::Part10 {
            let mut preamble = [0u8; 128];
            let n = self.options.preamble.len().min(128);
            preamble[..n].copy_from_slice(&self.options.preamble[..n]);
            file.extend_from_slice(&preamble);
            file.extend_from_slice(b"DICM");
        }
        if self.options.layout != Layout::DatasetOnly {
            file.extend_from_slice(&self.meta_group());
        }
        file.extend_from_slice(&dataset);
        file
    }

    fn meta_group(&self) -> Vec<u8> {
        let mut body = Encoder::new(true, false);
        for element in [
            Element::new(0x0002, 0x0001, *b"OB", Val::Bytes(vec![0x00, 0x01])),
            Element::uid(0x0002, 0x0002, &self.sop_class_uid),
            Element::uid(0x0002, 0x0003, &self.sop_instance_uid),
            Element::uid(0x0002, 0x0010, self.options.transfer_syntax.uid()),
            Element::uid(0x0002, 0x0012, IMPLEMENTATION_CLASS_UID),
            Element::text(0x0002, 0x0013, *b"SH", IMPLEMENTATION_VERSION_NAME),
        ] {
            body.element(&element);
        }
        let mut meta = Encoder::new(true, false);
        meta.element(&Element::new(
            0x0002,
            0x0000,
            *b"UL",
            Val::U32(body.buf.len() as u32),
        ));
        meta.buf.extend_from_slice(&body.buf);
        meta.buf
    }

    /// The data set's attributes before Pixel Data, in tag order.
    fn elements(&self) -> Vec<Element> {
        let jpeg = self.options.transfer_syntax == TransferSyntax::JpegBaseline;
        let bits = if jpeg { 8 } else { 16 };
        let opt = |g, e, vr, v: &Option<String>| v.as_ref().map(|v| Element::text(g, e, vr, v));
        let num = |g, e, v: Option<i32>| v.map(|v| Element::text(g, e, *b"IS", &v.to_string()));

        let mut elements = vec![
            Some(Element::text(0x0008, 0x0005, *b"CS", "ISO_IR 100")),
            Some(Element::text(
                0x0008,
                0x0008,
                *b"CS",
                "ORIGINAL\\PRIMARY\\AXIAL",
            )),
            Some(Element::uid(0x0008, 0x0016, &self.sop_class_uid)),
            Some(Element::uid(0x0008, 0x0018, &self.sop_instance_uid)),
            opt(0x0008, 0x0020, *b"DA", &self.study_date),
            opt(0x0008, 0x0021, *b"DA", &self.study_date),
            opt(0x0008, 0x0030, *b"TM", &self.study_time),
            opt(0x0008, 0x0050, *b"SH", &self.accession_number),
            Some(Element::text(0x0008, 0x0060, *b"CS", self.modality.code())),
            Some(Element::text(
                0x0008,
                0x0070,
                *b"LO",
                "ACME Medical Systems",
            )),
            Some(Element::text(0x0008, 0x0090, *b"PN", "SMITH^JOHN^^DR")),
            opt(0x0008, 0x1030, *b"LO", &self.study_description),
            Some(Element::new(
                0x0008,
                0x1032,
                *b"SQ",
                Val::Items(vec![vec![
                    Element::text(0x0008, 0x0100, *b"SH", "IMG1234"),
                    Element::text(0x0008, 0x0102, *b"SH", "LOCAL"),
                    Element::text(0x0008, 0x0104, *b"LO", "Imaging procedure"),
                ]]),
            )),
            opt(0x0008, 0x103E, *b"LO", &self.series_description),
            opt(0x0010, 0x0010, *b"PN", &self.patient_name),
            opt(0x0010, 0x0020, *b"LO", &self.patient_id),
            opt(0x0010, 0x0030, *b"DA", &self.patient_birth_date),
            opt(0x0010, 0x0040, *b"CS", &self.patient_sex),
            opt(0x0018, 0x0015, *b"CS", &self.body_part_examined),
            Some(Element::text(0x0018, 0x0050, *b"DS", "2.5")),
            Some(Element::uid(0x0020, 0x000D, &self.study_instance_uid)),
            Some(Element::uid(0x0020, 0x000E, &self.series_instance_uid)),
            Some(Element::text(0x0020, 0x0010, *b"SH", "1")),
            num(0x0020, 0x0011, self.series_number),
            num(0x0020, 0x0013, self.instance_number),
            Some(Element::text(
                0x0020,
                0x0032,
                *b"DS",
                "-175.0\\-175.0\\-42.5",
            )),
            Some(Element::text(0x0020, 0x0037, *b"DS", "1\\0\\0\\0\\1\\0")),
            Some(Element::uid(
                0x0020,
                0x0052,
                &frame_of_reference(&self.series_instance_uid),
            )),
            Some(Element::new(0x0028, 0x0002, *b"US", Val::U16(1))),
            Some(Element::text(0x0028, 0x0004, *b"CS", "MONOCHROME2")),
            (self.number_of_frames > 1)
                .then(|| Element::text(0x0028, 0x0008, *b"IS", &self.number_of_frames.to_string())),
            Some(Element::new(0x0028, 0x0010, *b"US", Val::U16(self.rows))),
            Some(Element::new(0x0028, 0x0011, *b"US", Val::U16(self.columns))),
            Some(Element::text(0x0028, 0x0030, *b"DS", "0.683594\\0.683594")),
            Some(Element::new(0x0028, 0x0100, *b"US", Val::U16(bits))),
            Some(Element::new(
                0x0028,
                0x0101,
                *b"US",
                Val::U16(if jpeg { 8 } else { 12 }),
            )),
            Some(Element::new(
                0x0028,
                0x0102,
                *b"US",
                Val::U16(if jpeg { 7 } else { 11 }),
            )),
            Some(Element::new(0x0028, 0x0103, *b"US", Val::U16(0))),
            Some(Element::text(0x0028, 0x1050, *b"DS", "40")),
            Some(Element::text(0x0028, 0x1051, *b"DS", "400")),
        ];
        if self.modality == Modality::Ct {
            elements.push(Some(Element::text(0x0028, 0x1052, *b"DS", "-1024")));
            elements.push(Some(Element::text(0x0028, 0x1053, *b"DS", "1")));
        }
        elements.into_iter().flatten().collect()
    }

    fn pixel_data(&self, out: &mut Encoder) {
        let frames = self.number_of_frames.max(1) as usize;
        let samples = usize::from(self.rows) * usize::from(self.columns);

        if self.options.transfer_syntax == TransferSyntax::JpegBaseline {
            let total = self.options.pixel_data_len.unwrap_or(samples * frames);
            let per_frame = (total / frames).max(4).next_multiple_of(2);
            let fragments = (0..frames).map(|_| jpeg_markers(per_frame)).collect();
            out.element(&Element::new(
                0x7FE0,
                0x0010,
                *b"OB",
                Val::Fragments(fragments),
            ));
            return;
        }

        let len = self
            .options
            .pixel_data_len
            .unwrap_or(samples * frames * 2)
            .next_multiple_of(2);
        // A ramp, so that deflate has something to do and frames differ.
        let words = (0..len / 2)
            .map(|i| ((i * 7 + i / 512) % 4096) as u16)
            .collect();
        out.element(&Element::new(0x7FE0, 0x0010, *b"OW", Val::Words(words)));
    }
}

/// A Frame of Reference UID tied to the series, within 64 characters.
fn frame_of_reference(series: &str) -> String {
    let mut uid = format!("{series}.1");
    if uid.len() > 64 {
        uid = format!(
            "2.25.{}",
            u128::from_str_radix(&hex_of(series), 16).unwrap_or(1)
        );
    }
    uid
}

fn hex_of(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..15])
}

/// JPEG marker bytes (SOI, APP0 JFIF, EOI) padded to `len` bytes.
fn jpeg_markers(len: usize) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    b.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");
    b.resize(len.max(b.len() + 2) - 2, 0);
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

/// An element to encode.
#[derive(Debug, Clone)]
struct Element {
    group: u16,
    element: u16,
    vr: [u8; 2],
    value: Val,
}

#[derive(Debug, Clone)]
enum Val {
    /// Text, padded with a space (NUL for UI) to even length.
    Text(String),
    U16(u16),
    U32(u32),
    /// OB bytes, padded with NUL.
    Bytes(Vec<u8>),
    /// OW words, in the syntax's byte order.
    Words(Vec<u16>),
    Items(Vec<Vec<Element>>),
    /// Encapsulated pixel data: an empty offset table, then one fragment
    /// each.
    Fragments(Vec<Vec<u8>>),
}

impl Element {
    fn new(group: u16, element: u16, vr: [u8; 2], value: Val) -> Self {
        Element {
            group,
            element,
            vr,
            value,
        }
    }

    fn text(group: u16, element: u16, vr: [u8; 2], text: &str) -> Self {
        Self::new(group, element, vr, Val::Text(text.into()))
    }

    fn uid(group: u16, element: u16, uid: &str) -> Self {
        Self::new(group, element, *b"UI", Val::Text(uid.into()))
    }
}

/// Writes elements in one encoding. Explicit VR sequences get defined
/// lengths, implicit VR ones undefined lengths with delimiters, so both
/// forms are exercised.
struct Encoder {
    buf: Vec<u8>,
    explicit: bool,
    big_endian: bool,
}

impl Encoder {
    fn new(explicit: bool, big_endian: bool) -> Self {
        Encoder {
            buf: Vec::new(),
            explicit,
            big_endian,
        }
    }

    fn u16(&mut self, v: u16) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    fn u32(&mut self, v: u32) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    /// Tag, VR (when explicit) and length.
    fn header(&mut self, group: u16, element: u16, vr: [u8; 2], len: u32) {
        self.u16(group);
        self.u16(element);
        if !self.explicit || group == 0xFFFE {
            self.u32(len);
        } else if matches!(
            &vr,
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV"
        ) || matches!(&vr, b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
        {
            self.buf.extend_from_slice(&vr);
            self.buf.extend_from_slice(&[0, 0]);
            self.u32(len);
        } else {
            self.buf.extend_from_slice(&vr);
            self.u16(len as u16);
        }
    }

    fn element(&mut self, e: &Element) {
        match &e.value {
            Val::Text(text) => {
                let mut bytes = text.as_bytes().to_vec();
                if bytes.len() % 2 == 1 {
                    bytes.push(if &e.vr == b"UI" { 0 } else { b' ' });
                }
                self.header(e.group, e.element, e.vr, bytes.len() as u32);
                self.buf.extend_from_slice(&bytes);
            }
            Val::U16(v) => {
                self.header(e.group, e.element, e.vr, 2);
                self.u16(*v);
            }
            Val::U32(v) => {
                self.header(e.group, e.element, e.vr, 4);
                self.u32(*v);
            }
            Val::Bytes(bytes) => {
                let padded = bytes.len().next_multiple_of(2);
                self.header(e.group, e.element, e.vr, padded as u32);
                self.buf.extend_from_slice(bytes);
                self.buf.resize(self.buf.len() + padded - bytes.len(), 0);
            }
            Val::Words(words) => {
                self.header(e.group, e.element, e.vr, (words.len() * 2) as u32);
                self.buf.reserve(words.len() * 2);
                for &w in words {
                    self.u16(w);
                }
            }
            Val::Items(items) => self.sequence(e, items),
            Val::Fragments(fragments) => {
                self.header(e.group, e.element, e.vr, u32::MAX);
                self.header(0xFFFE, 0xE000, *b"  ", 0);
                for fragment in fragments {
                    self.header(0xFFFE, 0xE000, *b"  ", fragment.len() as u32);
                    self.buf.extend_from_slice(fragment);
                }
                self.header(0xFFFE, 0xE0DD, *b"  ", 0);
            }
        }
    }

    fn sequence(&mut self, e: &Element, items: &[Vec<Element>]) {
        if !self.explicit {
            self.header(e.group, e.element, e.vr, u32::MAX);
            for item in items {
                self.header(0xFFFE, 0xE000, *b"  ", u32::MAX);
                for inner in item {
                    self.element(inner);
                }
                self.header(0xFFFE, 0xE00D, *b"  ", 0);
            }
            self.header(0xFFFE, 0xE0DD, *b"  ", 0);
            return;
        }

        let mut body = Encoder::new(self.explicit, self.big_endian);
        for item in items {
            let mut inner = Encoder::new(self.explicit, self.big_endian);
            for element in item {
                inner.element(element);
            }
            body.header(0xFFFE, 0xE000, *b"  ", inner.buf.len() as u32);
            body.buf.extend_from_slice(&inner.buf);
        }
        self.header(e.group, e.element, e.vr, body.buf.len() as u32);
        self.buf.extend_from_slice(&body.buf);
    }
}

/// Files that lie, nest too deep, hide an executable or are not DICOM at
/// all. Each is small; none is valid.
pub mod hostile {
    use super::{DicomFixture, Element, Encoder, TransferSyntax, Val};

    /// The executable formats a preamble can impersonate.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Executable {
        /// Windows PE (`MZ`).
        Mz,
        /// Linux ELF (`\x7fELF`).
        Elf,
    }

    fn base() -> DicomFixture {
        let mut fixture = DicomFixture::ct();
        fixture.options.pixel_data = false;
        fixture
    }

    /// A Part 10 file of about 1 KB whose Text Value (0040,A160) declares
    /// `length` bytes (e.g. 1 GiB) and holds 16.
    pub fn declared_length(length: u32, ts: TransferSyntax) -> Vec<u8> {
        let fixture = base().transfer_syntax(ts);
        let mut tail = Encoder::new(ts.explicit(), ts.big_endian());
        tail.header(0x0040, 0xA160, *b"UT", length);
        tail.buf.extend_from_slice(&[b'A'; 16]);
        fixture.encode(&tail.buf)
    }

    /// A Part 10 file whose Content Sequence (0040,A730) declares a
    /// defined length of 1 GiB.
    pub fn gigabyte_sequence() -> Vec<u8> {
        let mut tail = Encoder::new(true, false);
        tail.header(0x0040, 0xA730, *b"SQ", 1 << 30);
        tail.header(0xFFFE, 0xE000, *b"  ", 1 << 30);
        tail.buf.extend_from_slice(&[0; 32]);
        base().encode(&tail.buf)
    }

    /// A Part 10 file with a private OB element whose `len` bytes are all
    /// there (so only an element cap refuses it).
    pub fn oversized_element(len: u32) -> Vec<u8> {
        let mut tail = Encoder::new(true, false);
        tail.element(&Element::text(0x0029, 0x0010, *b"LO", "ACME 1.0"));
        tail.element(&Element::new(
            0x0029,
            0x1010,
            *b"OB",
            Val::Bytes(vec![0x5A; len as usize]),
        ));
        base().encode(&tail.buf)
    }

    /// An implicit VR file whose Image Type (0008,0008) is 1 MiB of
    /// backslashes: a million empty values, each an allocation to a parser.
    pub fn many_values() -> Vec<u8> {
        let mut fixture = base().transfer_syntax(TransferSyntax::ImplicitVrLittleEndian);
        fixture.options.layout = super::Layout::DatasetOnly;
        let mut bytes = Encoder::new(false, false);
        bytes.header(0x0008, 0x0008, *b"CS", 1 << 20);
        bytes.buf.resize(bytes.buf.len() + (1 << 20), b'\\');
        [bytes.buf, fixture.to_bytes()].concat()
    }

    /// A Part 10 file with `depth` Content Sequences nested in each other,
    /// each undefined-length and properly delimited.
    pub fn deep_sequences(depth: usize, ts: TransferSyntax) -> Vec<u8> {
        let mut tail = Encoder::new(ts.explicit(), ts.big_endian());
        for _ in 0..depth {
            tail.header(0x0040, 0xA730, *b"SQ", u32::MAX);
            tail.header(0xFFFE, 0xE000, *b"  ", u32::MAX);
        }
        tail.element(&Element::text(0x0040, 0xA040, *b"CS", "TEXT"));
        for _ in 0..depth {
            tail.header(0xFFFE, 0xE00D, *b"  ", 0);
            tail.header(0xFFFE, 0xE0DD, *b"  ", 0);
        }
        base().transfer_syntax(ts).encode(&tail.buf)
    }

    /// A Part 10 file that opens an undefined-length sequence and item and
    /// ends without delimiting them.
    pub fn undelimited_sequence() -> Vec<u8> {
        let mut tail = Encoder::new(true, false);
        tail.header(0x0040, 0xA730, *b"SQ", u32::MAX);
        tail.header(0xFFFE, 0xE000, *b"  ", u32::MAX);
        tail.element(&Element::text(0x0040, 0xA040, *b"CS", "TEXT"));
        base().encode(&tail.buf)
    }

    /// A valid CT file whose preamble starts like an executable.
    pub fn executable_preamble(kind: Executable) -> Vec<u8> {
        let mut fixture = DicomFixture::ct();
        fixture.options.preamble = match kind {
            Executable::Mz => b"MZ\x90\x00\x03\x00\x00\x00\x04\x00".to_vec(),
            Executable::Elf => b"\x7fELF\x02\x01\x01\x00".to_vec(),
        };
        fixture.to_bytes()
    }

    /// A valid CT file cut after `keep` bytes.
    pub fn truncated(keep: usize) -> Vec<u8> {
        let mut bytes = DicomFixture::ct().to_bytes();
        bytes.truncate(keep);
        bytes
    }

    /// A PNG signature followed by junk: not DICOM at all.
    pub fn not_dicom() -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
        bytes.resize(4096, 0x42);
        bytes
    }

    /// A deflated file whose data set inflates to about `inflated` bytes:
    /// the normal attributes, then the same 64 KiB private element over and
    /// over, which compresses to almost nothing.
    pub fn deflate_bomb(inflated: usize) -> Vec<u8> {
        let mut chunk = Encoder::new(true, false);
        chunk.element(&Element::new(
            0x0009,
            0x1001,
            *b"OB",
            Val::Bytes(vec![0; 65534]),
        ));
        let tail = chunk.buf.repeat(inflated.div_ceil(chunk.buf.len()));
        base()
            .transfer_syntax(TransferSyntax::DeflatedExplicitVrLittleEndian)
            .encode(&tail)
    }
}

#[cfg(test)]
mod tests;

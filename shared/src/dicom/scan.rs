//! The pre-scan: walks the raw bytes of a file up to Pixel Data, element by
//! element, before any parser sees them.
//!
//! The walk allocates nothing that depends on a declared length: every
//! length is checked against the bytes that exist and the caps in
//! [`HeaderLimits`] first, so a parser that trusts lengths only ever sees a
//! bounded, well-formed header.

use std::borrow::Cow;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use flate2::{Decompress, FlushDecompress, Status};

use super::HeaderLimits;
use super::error::DicomError;

/// The first tag of the pixel data group (Float Pixel Data); the header
/// ends at it or at any later top-level tag.
const PIXEL_DATA_FIRST: u32 = 0x7FE0_0008;
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Bytes asked for beyond what a step needs, so a header made of many
/// small elements does not cost one ranged GET each.
const MIN_GROWTH: u64 = 64 * 1024;
/// First inflated window of a deflated data set; doubled up to the cap.
const INFLATE_WINDOW: usize = 16 * 1024;

pub(crate) const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
pub(crate) const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
pub(crate) const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
const JPIP_REFERENCED_DEFLATE: &str = "1.2.840.10008.1.2.4.95";

/// How the data set after the file meta group is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
    DeflatedExplicitLittle,
}

impl Syntax {
    /// The data set encoding of a transfer syntax. Every syntax other than
    /// the three native exceptions encodes its data set as explicit VR
    /// little endian (compressed syntaxes differ in Pixel Data only).
    fn from_uid(uid: &str) -> Syntax {
        match uid {
            IMPLICIT_VR_LITTLE_ENDIAN => Syntax::ImplicitLittle,
            EXPLICIT_VR_BIG_ENDIAN => Syntax::ExplicitBig,
            DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN | JPIP_REFERENCED_DEFLATE => {
                Syntax::DeflatedExplicitLittle
            }
            _ => Syntax::ExplicitLittle,
        }
    }

    fn encoding(self) -> Encoding {
        match self {
            Syntax::ImplicitLittle => Encoding {
                explicit: false,
                big_endian: false,
            },
            Syntax::ExplicitBig => Encoding {
                explicit: true,
                big_endian: true,
            },
            _ => Encoding {
                explicit: true,
                big_endian: false,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

const EXPLICIT_LE: Encoding = Encoding {
    explicit: true,
    big_endian: false,
};
const IMPLICIT_LE: Encoding = Encoding {
    explicit: false,
    big_endian: false,
};

/// What the file meta group says, where present.
#[derive(Debug, Default, Clone)]
pub(crate) struct FileMeta {
    pub transfer_syntax_uid: Option<String>,
    pub media_storage_sop_class_uid: Option<String>,
    pub media_storage_sop_instance_uid: Option<String>,
}

/// A header the pre-scan accepted.
#[derive(Debug)]
pub(crate) struct Scanned<'a> {
    pub meta: FileMeta,
    pub syntax: Syntax,
    /// From the meta group, or inferred from the data set's first bytes.
    pub transfer_syntax_uid: String,
    /// The data set up to Pixel Data; inflated if the file was deflated.
    pub dataset: Cow<'a, [u8]>,
    /// Bytes of the file the header needed.
    pub header_len: u64,
    /// File offset of the Pixel Data element, when it is not deflated.
    pub pixel_data_offset: Option<u64>,
}

/// Outcome of a pre-scan over the bytes at hand.
#[derive(Debug)]
pub(crate) enum Scan<'a> {
    Done(Scanned<'a>),
    /// Fetch up to this file offset (exclusive) and scan again.
    NeedMore(u64),
}

/// Why a walk stopped early.
enum Stop {
    /// The walk needs the stream up to this offset (exclusive).
    Need(u64),
    Fail(DicomError),
}

impl From<DicomError> for Stop {
    fn from(e: DicomError) -> Self {
        Stop::Fail(e)
    }
}

/// Scans `prefix`, the first bytes of an object of `object_size` bytes.
pub(crate) fn scan<'a>(
    prefix: &'a [u8],
    object_size: u64,
    limits: &HeaderLimits,
) -> Result<Scan<'a>, DicomError> {
    // A caller may hand more bytes than the object has; the object wins.
    let data = &prefix[..prefix
        .len()
        .min(usize::try_from(object_size).unwrap_or(usize::MAX))];
    let have = data.len() as u64;

    // Refuse polyglot executables before looking any further.
    if data.starts_with(b"MZ") {
        return Err(DicomError::ExecutablePreamble { kind: "MZ" });
    }
    if data.starts_with(b"\x7fELF") {
        return Err(DicomError::ExecutablePreamble { kind: "ELF" });
    }

    // The layout is only decidable with the first 132 bytes.
    if have < object_size.min(132) {
        return Ok(Scan::NeedMore(grow(132, have, object_size)));
    }
    let meta_start = if data.len() >= 132 && &data[128..132] == b"DICM" {
        Some(132)
    } else if data.starts_with(b"DICM") {
        Some(4)
    } else if data.starts_with(&[0x02, 0x00]) {
        Some(0)
    } else if data.starts_with(&[0x08, 0x00]) || data.starts_with(&[0x00, 0x08]) {
        None
    } else if data.len() < 8 {
        return Err(DicomError::NotDicom {
            detail: "shorter than any DICOM file",
        });
    } else {
        return Err(DicomError::NotDicom {
            detail: "no DICM marker, no file meta group, no data set at group 0008",
        });
    };

    // File meta group, always explicit VR little endian.
    let (meta, dataset_start) = match meta_start {
        Some(start) => match scan_meta(data, start, object_size, limits) {
            Ok(found) => found,
            Err(Stop::Need(end)) => return Ok(Scan::NeedMore(grow(end, have, object_size))),
            Err(Stop::Fail(e)) => return Err(e),
        },
        None => (FileMeta::default(), 0),
    };

    // Transfer syntax: declared, or inferred as some modalities require.
    let (syntax, transfer_syntax_uid) = match &meta.transfer_syntax_uid {
        Some(uid) => (Syntax::from_uid(uid), uid.clone()),
        None if data.len() < dataset_start + 8 && have < object_size => {
            return Ok(Scan::NeedMore(grow(
                dataset_start as u64 + 8,
                have,
                object_size,
            )));
        }
        None => {
            let syntax = infer_syntax(&data[dataset_start..], object_size, dataset_start)?;
            let uid = match syntax {
                Syntax::ImplicitLittle => IMPLICIT_VR_LITTLE_ENDIAN,
                Syntax::ExplicitBig => EXPLICIT_VR_BIG_ENDIAN,
                _ => EXPLICIT_VR_LITTLE_ENDIAN,
            };
            (syntax, uid.to_string())
        }
    };

    if syntax == Syntax::DeflatedExplicitLittle {
        return scan_deflated(
            data,
            dataset_start,
            object_size,
            limits,
            meta,
            transfer_syntax_uid,
        );
    }

    // The data set, element by element, up to Pixel Data.
    let mut walker = Walker::new(&data[dataset_start..], limits, object_size);
    walker.base = dataset_start as u64;
    walker.end = Some((object_size - dataset_start as u64) as usize);
    let (dataset_len, pixel) = match walker.walk_top(syntax.encoding()) {
        Ok(Top::PixelData(at)) => (at, true),
        Ok(Top::End) => (data.len() - dataset_start, false),
        Err(Stop::Need(end)) => {
            let end = dataset_start as u64 + end;
            return Ok(Scan::NeedMore(grow(end, have, object_size)));
        }
        Err(Stop::Fail(e)) => return Err(e),
    };
    let header_len = (dataset_start + dataset_len) as u64;
    Ok(Scan::Done(Scanned {
        meta,
        syntax,
        transfer_syntax_uid,
        dataset: Cow::Borrowed(&data[dataset_start..dataset_start + dataset_len]),
        header_len,
        pixel_data_offset: pixel.then_some(header_len),
    }))
}

/// The offset to ask for next: at least `needed`, plus room for the
/// elements after it, never past the object.
fn grow(needed: u64, have: u64, object_size: u64) -> u64 {
    let slack = MIN_GROWTH.max(have / 4);
    object_size.min(needed.max(have) + slack)
}

/// Walks group 0002 from `start`; returns it and where the data set begins.
///
/// The walk follows the elements rather than the group length, since some
/// writers get the group length wrong; the group length is still checked
/// against the object.
fn scan_meta(
    data: &[u8],
    start: usize,
    object_size: u64,
    limits: &HeaderLimits,
) -> Result<(FileMeta, usize), Stop> {
    let mut walker = Walker::new(data, limits, object_size);
    walker.end = Some(object_size as usize);
    let mut meta = FileMeta::default();
    let mut pos = start;

    while pos as u64 != object_size {
        let group = walker.tag_at(pos, EXPLICIT_LE)?.0;
        if group != 0x0002 {
            break;
        }
        let h = walker.header(pos, EXPLICIT_LE)?;
        if h.length == UNDEFINED {
            return Err(malformed(
                h.tag,
                pos,
                "undefined length in the file meta group",
            ));
        }
        let value_start = pos + h.len;
        let value_end = walker.value(h.tag, value_start, h.length)?;
        let value = &data[value_start..value_end];

        match (h.tag.0, h.tag.1) {
            (0x0002, 0x0000) if value.len() == 4 => {
                let group_len = u64::from(u32::from_le_bytes(value.try_into().unwrap()));
                if value_end as u64 + group_len > object_size {
                    return Err(Stop::Fail(DicomError::LengthBeyondObject {
                        tag: h.tag,
                        length: group_len,
                        object_size,
                    }));
                }
            }
            (0x0002, 0x0002) => meta.media_storage_sop_class_uid = uid_text(value),
            (0x0002, 0x0003) => meta.media_storage_sop_instance_uid = uid_text(value),
            (0x0002, 0x0010) => meta.transfer_syntax_uid = uid_text(value),
            _ => {}
        }
        pos = value_end;
    }
    Ok((meta, pos))
}

/// A UI value without its padding; None when empty or not ASCII.
fn uid_text(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c.is_ascii_whitespace());
    (!text.is_empty()).then(|| text.to_string())
}

/// Guesses the encoding of a data set with no declared transfer syntax
/// from its first element, which must be in group 0008.
fn infer_syntax(bytes: &[u8], object_size: u64, start: usize) -> Result<Syntax, DicomError> {
    if bytes.is_empty() && start as u64 == object_size {
        return Ok(Syntax::ImplicitLittle);
    }
    if bytes.len() < 8 {
        return Err(DicomError::NotDicom {
            detail: "data set too short to infer its encoding",
        });
    }
    let explicit = VR::from_binary([bytes[4], bytes[5]]).is_some();
    match (u16::from_le_bytes([bytes[0], bytes[1]]), explicit) {
        (0x0008, true) => Ok(Syntax::ExplicitLittle),
        (0x0008, false) => Ok(Syntax::ImplicitLittle),
        _ if u16::from_be_bytes([bytes[0], bytes[1]]) == 0x0008 && explicit => {
            Ok(Syntax::ExplicitBig)
        }
        _ => Err(DicomError::NotDicom {
            detail: "no transfer syntax and the data set does not start at group 0008",
        }),
    }
}

/// Inflates a deflated data set into a window that doubles up to the
/// header cap, walking it after each step, so a deflate bomb costs at most
/// the cap.
fn scan_deflated<'a>(
    data: &'a [u8],
    dataset_start: usize,
    object_size: u64,
    limits: &HeaderLimits,
    meta: FileMeta,
    transfer_syntax_uid: String,
) -> Result<Scan<'a>, DicomError> {
    let input = &data[dataset_start..];
    let cap = usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX);
    let mut inflater = Decompress::new(false);
    let mut out: Vec<u8> = Vec::new();
    let mut window = INFLATE_WINDOW.min(cap);
    let mut finished = false;

    loop {
        while !finished && out.len() < window {
            out.reserve_exact(window - out.len());
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let rest = &input[inflater.total_in() as usize..];
            let status = inflater
                .decompress_vec(rest, &mut out, FlushDecompress::None)
                .map_err(|_| DicomError::Inflate)?;
            finished = status == Status::StreamEnd;
            if inflater.total_in() == before_in && inflater.total_out() == before_out {
                break;
            }
        }

        let mut walker = Walker::new(&out, limits, object_size);
        walker.end = finished.then_some(out.len());
        let dataset_len = match walker.walk_top(EXPLICIT_LE) {
            Ok(Top::PixelData(at)) => at,
            Ok(Top::End) => out.len(),
            Err(Stop::Fail(e)) => return Err(e),
            Err(Stop::Need(_)) if out.len() >= window => {
                if window >= cap {
                    return Err(DicomError::HeaderTooLarge {
                        cap: limits.max_header_bytes,
                    });
                }
                window = window.saturating_mul(2).min(cap);
                continue;
            }
            Err(Stop::Need(_)) => {
                // The compressed input ran out before the stream did.
                let have = data.len() as u64;
                if have < object_size {
                    return Ok(Scan::NeedMore(grow(have + 1, have, object_size)));
                }
                return Err(DicomError::Truncated {
                    needed: object_size + 1,
                    available: have,
                });
            }
        };

        out.truncate(dataset_len);
        return Ok(Scan::Done(Scanned {
            meta,
            syntax: Syntax::DeflatedExplicitLittle,
            transfer_syntax_uid,
            dataset: Cow::Owned(out),
            header_len: dataset_start as u64 + inflater.total_in(),
            pixel_data_offset: None,
        }));
    }
}

fn malformed(tag: Tag, offset: usize, problem: &'static str) -> Stop {
    Stop::Fail(DicomError::Malformed {
        tag,
        offset: offset as u64,
        problem,
    })
}

/// How the top-level walk ended.
enum Top {
    /// Pixel Data (or a later tag) starts at this stream offset.
    PixelData(usize),
    /// The stream ended after a complete element.
    End,
}

/// An element, item or delimiter header.
struct Header {
    tag: Tag,
    vr: Option<VR>,
    length: u32,
    /// Bytes of the header itself.
    len: usize,
}

/// Walks one stream: the file after its meta group, or the inflated data
/// set. Offsets are relative to the stream.
struct Walker<'a> {
    data: &'a [u8],
    /// Length of the whole stream where known (the bytes that exist).
    end: Option<usize>,
    /// File offset of the stream's first byte, for the header cap.
    base: u64,
    object_size: u64,
    limits: &'a HeaderLimits,
    elements: usize,
    items: usize,
    values: usize,
}

impl<'a> Walker<'a> {
    fn new(data: &'a [u8], limits: &'a HeaderLimits, object_size: u64) -> Self {
        Walker {
            data,
            end: None,
            base: 0,
            object_size,
            limits,
            elements: 0,
            items: 0,
            values: 0,
        }
    }

    /// `n` bytes at `pos`, or why they cannot be had yet.
    fn bytes(&self, pos: usize, n: usize) -> Result<&'a [u8], Stop> {
        let stop = pos.saturating_add(n);
        if self.base + stop as u64 > self.limits.max_header_bytes {
            return Err(DicomError::HeaderTooLarge {
                cap: self.limits.max_header_bytes,
            }
            .into());
        }
        if let Some(end) = self.end
            && stop > end
        {
            return Err(DicomError::Truncated {
                needed: self.base + stop as u64,
                available: self.base + end as u64,
            }
            .into());
        }
        if stop > self.data.len() {
            return Err(Stop::Need(stop as u64));
        }
        Ok(&self.data[pos..stop])
    }

    fn u16_at(b: &[u8], i: usize, enc: Encoding) -> u16 {
        let pair = [b[i], b[i + 1]];
        if enc.big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    }

    fn u32_at(b: &[u8], i: usize, enc: Encoding) -> u32 {
        let quad = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if enc.big_endian {
            u32::from_be_bytes(quad)
        } else {
            u32::from_le_bytes(quad)
        }
    }

    fn tag_at(&self, pos: usize, enc: Encoding) -> Result<Tag, Stop> {
        let b = self.bytes(pos, 4)?;
        Ok(Tag(Self::u16_at(b, 0, enc), Self::u16_at(b, 2, enc)))
    }

    fn header(&mut self, pos: usize, enc: Encoding) -> Result<Header, Stop> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(DicomError::TooManyElements {
                cap: self.limits.max_elements,
            }
            .into());
        }

        let b = self.bytes(pos, 8)?;
        let tag = Tag(Self::u16_at(b, 0, enc), Self::u16_at(b, 2, enc));
        // Items and delimiters have no VR in any encoding.
        if tag.0 == 0xFFFE || !enc.explicit {
            let length = Self::u32_at(b, 4, enc);
            return Ok(Header {
                tag,
                vr: None,
                length,
                len: 8,
            });
        }
        let Some(vr) = VR::from_binary([b[4], b[5]]) else {
            return Err(malformed(tag, pos, "invalid VR"));
        };
        if has_long_length(vr) {
            let b = self.bytes(pos, 12)?;
            Ok(Header {
                tag,
                vr: Some(vr),
                length: Self::u32_at(b, 8, enc),
                len: 12,
            })
        } else {
            Ok(Header {
                tag,
                vr: Some(vr),
                length: u32::from(Self::u16_at(b, 6, enc)),
                len: 8,
            })
        }
    }

    /// Checks a value's declared length against the object and the caps,
    /// and that its bytes are at hand; returns where it ends.
    fn value(&self, tag: Tag, start: usize, length: u32) -> Result<usize, Stop> {
        let end = self.span(tag, start, length, u64::from(self.limits.max_element_len))?;
        self.bytes(start, length as usize)?;
        Ok(end)
    }

    /// Checks a defined length against the object and `cap` without
    /// needing its bytes; returns where it ends.
    fn span(&self, tag: Tag, start: usize, length: u32, cap: u64) -> Result<usize, Stop> {
        let len = u64::from(length);
        if let Some(end) = self.end
            && start as u64 + len > end as u64
        {
            return Err(DicomError::LengthBeyondObject {
                tag,
                length: len,
                object_size: self.object_size,
            }
            .into());
        }
        if len > cap {
            return Err(DicomError::ElementTooLarge {
                tag,
                length: len,
                cap,
            }
            .into());
        }
        Ok(start + length as usize)
    }

    fn walk_top(&mut self, enc: Encoding) -> Result<Top, Stop> {
        let mut pos = 0;
        loop {
            if Some(pos) == self.end {
                return Ok(Top::End);
            }
            let tag = self.tag_at(pos, enc)?;
            if tag.0 == 0xFFFE {
                return Err(malformed(tag, pos, "item or delimiter outside a sequence"));
            }
            if (u32::from(tag.0) << 16 | u32::from(tag.1)) >= PIXEL_DATA_FIRST {
                return Ok(Top::PixelData(pos));
            }
            pos = self.element(pos, enc, 0)?;
        }
    }

    /// Walks one element at `depth` (0 at top level); returns where it ends.
    fn element(&mut self, pos: usize, enc: Encoding, depth: usize) -> Result<usize, Stop> {
        let h = self.header(pos, enc)?;
        let start = pos + h.len;
        if h.tag.0 == 0xFFFE {
            return Err(malformed(
                h.tag,
                pos,
                "item or delimiter where an element belongs",
            ));
        }

        let undefined = h.length == UNDEFINED;
        // Implicit VR: the dictionary tells sequences and value types.
        let dictionary = if h.vr.is_none() {
            dictionary_vr(h.tag)
        } else {
            None
        };
        let sequence = match h.vr {
            Some(VR::SQ) => true,
            Some(VR::UN) => undefined,
            Some(_) => false,
            None => undefined && h.tag != PIXEL_DATA || dictionary == Some(VR::SQ),
        };
        if sequence {
            // An undefined-length UN holds a sequence in implicit VR LE.
            let inner = if h.vr == Some(VR::UN) {
                IMPLICIT_LE
            } else {
                enc
            };
            return self.sequence(h.tag, start, h.length, inner, depth + 1);
        }
        if undefined {
            if h.tag == PIXEL_DATA {
                // Encapsulated pixel data nested in an item (an icon).
                return self.fragments(start, enc);
            }
            return Err(malformed(
                h.tag,
                pos,
                "undefined length on a non-sequence element",
            ));
        }
        let end = self.value(h.tag, start, h.length)?;
        if let Some(vr) = h.vr.or(dictionary) {
            self.count_values(vr, &self.data[start..end])?;
        }
        Ok(end)
    }

    /// Counts the values a parser will make of an element, since each
    /// costs an allocation: a 1 MiB run of backslashes is a million
    /// strings.
    fn count_values(&mut self, vr: VR, value: &[u8]) -> Result<(), Stop> {
        use VR::*;
        let n = match vr {
            US | SS => value.len() / 2,
            UL | SL | FL | AT => value.len() / 4,
            FD | SV | UV => value.len() / 8,
            AE | AS | CS | DA | DS | DT | IS | LO | PN | SH | TM | UC | UI => {
                1 + value.iter().filter(|&&b| b == b'\\').count()
            }
            _ => 1,
        };
        self.values += n;
        if self.values > self.limits.max_values {
            return Err(DicomError::TooManyValues {
                cap: self.limits.max_values,
            }
            .into());
        }
        Ok(())
    }

    fn sequence(
        &mut self,
        tag: Tag,
        start: usize,
        length: u32,
        enc: Encoding,
        depth: usize,
    ) -> Result<usize, Stop> {
        if depth > self.limits.max_sequence_depth {
            return Err(DicomError::SequenceTooDeep {
                depth,
                cap: self.limits.max_sequence_depth,
            }
            .into());
        }

        let mut pos = start;
        if length == UNDEFINED {
            loop {
                if Some(pos) == self.end {
                    return Err(DicomError::MissingDelimiter { tag }.into());
                }
                let h = self.header(pos, enc)?;
                match h.tag {
                    SEQUENCE_DELIMITER => return Ok(pos + 8),
                    ITEM => pos = self.item(&h, pos + 8, enc, depth)?,
                    other => return Err(malformed(other, pos, "expected an item")),
                }
            }
        }

        let end = self.span(tag, start, length, self.limits.max_header_bytes)?;
        while pos < end {
            let h = self.header(pos, enc)?;
            if h.tag != ITEM {
                return Err(malformed(h.tag, pos, "expected an item"));
            }
            pos = self.item(&h, pos + 8, enc, depth)?;
        }
        if pos != end {
            return Err(malformed(
                tag,
                start,
                "items run past the end of their sequence",
            ));
        }
        Ok(end)
    }

    fn item(
        &mut self,
        h: &Header,
        start: usize,
        enc: Encoding,
        depth: usize,
    ) -> Result<usize, Stop> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(DicomError::TooManyItems {
                cap: self.limits.max_items,
            }
            .into());
        }

        let mut pos = start;
        if h.length == UNDEFINED {
            loop {
                if Some(pos) == self.end {
                    return Err(DicomError::MissingDelimiter { tag: ITEM }.into());
                }
                if self.tag_at(pos, enc)? == ITEM_DELIMITER {
                    self.header(pos, enc)?;
                    return Ok(pos + 8);
                }
                pos = self.element(pos, enc, depth)?;
            }
        }

        let end = self.span(ITEM, start, h.length, self.limits.max_header_bytes)?;
        while pos < end {
            pos = self.element(pos, enc, depth)?;
        }
        if pos != end {
            return Err(malformed(
                ITEM,
                start,
                "elements run past the end of their item",
            ));
        }
        Ok(end)
    }

    /// Walks the fragments of encapsulated pixel data up to its delimiter.
    fn fragments(&mut self, start: usize, enc: Encoding) -> Result<usize, Stop> {
        let mut pos = start;
        loop {
            if Some(pos) == self.end {
                return Err(DicomError::MissingDelimiter { tag: PIXEL_DATA }.into());
            }
            let h = self.header(pos, enc)?;
            match h.tag {
                SEQUENCE_DELIMITER => return Ok(pos + 8),
                ITEM if h.length != UNDEFINED => {
                    self.items += 1;
                    if self.items > self.limits.max_items {
                        return Err(DicomError::TooManyItems {
                            cap: self.limits.max_items,
                        }
                        .into());
                    }
                    pos = self.value(ITEM, pos + 8, h.length)?;
                }
                other => return Err(malformed(other, pos, "expected a pixel data fragment")),
            }
        }
    }
}

/// VRs whose explicit encoding has a 4-byte length after 2 reserved bytes.
fn has_long_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV
    )
}

/// The VR the standard dictionary gives `tag`, which is how implicit VR
/// tells a defined-length sequence from a value.
fn dictionary_vr(tag: Tag) -> Option<VR> {
    StandardDataDictionary
        .by_tag(tag)
        .and_then(|entry| entry.vr().exact())
}

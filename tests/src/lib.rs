//! Helpers the end-to-end tests and the bench share: DICOM fixtures
//! written byte by byte.

pub mod dicom;

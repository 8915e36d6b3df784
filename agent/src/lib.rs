//! The bridge agent a hospital runs next to its PACS: finds DICOM in
//! Orthanc and in a watched folder, records each instance in a durable
//! queue, and sends it once to the hub through presigned uploads.

pub mod config;
pub mod dicom;
pub mod folder;
pub mod hub;
pub mod orthanc;
pub mod push;
pub mod queue;
pub mod run;
pub mod sources;
pub mod spool;
pub mod status;
pub mod uploader;

//! Integration tests of `pacs-agent`: the real binary against a real
//! Orthanc (authentication on), a real folder, and the hub's local stack.

#[path = "agent/end_to_end.rs"]
mod end_to_end;
#[path = "agent/folder.rs"]
mod folder;
#[path = "agent/full_disk.rs"]
mod full_disk;
#[path = "agent/hub_stack.rs"]
mod hub_stack;
#[path = "agent/orthanc_sync.rs"]
mod orthanc_sync;
#[path = "agent/startup.rs"]
mod startup;
#[path = "agent/support.rs"]
mod support;
#[path = "agent/webhook.rs"]
mod webhook;

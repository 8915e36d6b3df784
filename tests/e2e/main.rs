//! End-to-end tests of pacs-hub on the local stack: every test starts its
//! own stack on free ports and talks to it over HTTP and the AWS SDKs.

mod readpath;

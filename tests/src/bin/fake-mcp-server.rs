//! Placeholder: the in-repo rmcp test server (issue 5).
fn main() {}

//! A fault-injecting HTTP proxy on 127.0.0.1 (filled in after the main flows work).

/// Placeholder.
#[derive(Debug, Clone)]
pub enum Fault {}
/// Placeholder.
#[derive(Debug)]
pub struct FaultProxy;
/// Placeholder.
#[derive(Debug)]
pub struct ProxyLog;

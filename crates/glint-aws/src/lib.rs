//! Glint's AWS provider: instances as EC2 instances, declared rules as
//! Glint-owned security groups, on a lean client of AWS's Query APIs.
//!
//! Layout:
//! - `sigv4`: Signature Version 4 (on `sha2` + `hmac`), tested against
//!   AWS's published test-suite examples;
//! - `config`: the options from `AWS_*` and `GLINT_AWS_*` variables;
//! - `client`: signed, form-encoded POSTs over hyper 1, every call under a
//!   timeout and retried with capped exponential backoff and jitter
//!   (`retry`) on throttling, 429, 5xx and broken connections;
//! - `error`: AWS's error documents as [`AwsError`] (code, message, request id);
//! - `xml`: reading answers with `roxmltree`;
//! - `ec2`, `elbv2`: the EC2 and ELBv2 calls, typed;
//! - `targets`: endpoints as target groups, instances registered and
//!   deregistered (before termination);
//! - `naming`: tags, group names, instance types, `ClientToken`, user data;
//! - `rules`: the pure rules → ingress function and the diff;
//! - `plan`: the AWS resources a version needs, for `glint plan`;
//! - `security`: reconciling the groups, drift as incidents;
//! - `provider`: [`AwsProvider`], the `Provider` implementation.

pub mod client;
pub mod config;
pub mod ec2;
pub mod elbv2;
pub mod error;
pub mod naming;
pub mod plan;
pub mod provider;
pub mod retry;
pub mod rules;
pub mod security;
pub mod sigv4;
pub mod targets;
pub mod xml;

pub use client::{Api, Client, ClientConfig};
pub use error::AwsError;
pub use provider::{AwsOptions, AwsProvider, DEFAULT_RESYNC, Target};
pub use retry::RetryPolicy;
pub use sigv4::Credentials;

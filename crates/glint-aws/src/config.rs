//! The aws provider's configuration from the environment: the standard
//! `AWS_*` variables for the client, `GLINT_AWS_*` for Glint's own choices.
//! Every variable is documented in `docs/aws.md`.

use crate::client::ClientConfig;
use crate::error::AwsError;
use crate::provider::AwsOptions;
use glint_model::Digest;
use std::time::Duration;

/// Parses `5s`, `500ms`, `2m` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

/// Parses `GLINT_AWS_AMIS`: `DIGEST=ami-…` pairs separated by commas.
pub fn parse_amis(s: &str) -> Result<Vec<(Digest, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (digest, ami) = pair.split_once('=').ok_or_else(|| {
                format!("GLINT_AWS_AMIS: expected DIGEST=ami-..., found `{pair}`")
            })?;
            let digest = Digest::parse(digest.trim()).map_err(|_| {
                format!(
                    "GLINT_AWS_AMIS: expected an image digest (sha256:<64 hex>, as `glint images` shows), found `{digest}`"
                )
            })?;
            let ami = ami.trim();
            if !ami.starts_with("ami-") {
                return Err(format!(
                    "GLINT_AWS_AMIS: expected an AMI id (ami-...) for {digest}, found `{ami}`"
                ));
            }
            Ok((digest, ami.to_owned()))
        })
        .collect()
}

impl AwsOptions {
    /// The options from the environment: the client from `AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`; then `GLINT_AWS_AMIS`, `GLINT_AWS_DEFAULT_AMI`,
    /// `GLINT_AWS_SUBNET`, `GLINT_AWS_VPC`, `GLINT_AWS_RESYNC`,
    /// `GLINT_AWS_ENDPOINT_CIDR`, `GLINT_AWS_TIMEOUT`.
    pub fn from_env() -> Result<AwsOptions, AwsError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut client = ClientConfig::from_env()?;
        if let Some(t) = var("GLINT_AWS_TIMEOUT") {
            client.timeout = parse_duration(&t).ok_or_else(|| {
                AwsError::Config(format!(
                    "GLINT_AWS_TIMEOUT: expected a duration such as 10s, found `{t}`"
                ))
            })?;
        }
        let mut o = AwsOptions::new(client);
        if let Some(a) = var("GLINT_AWS_AMIS") {
            o.amis = parse_amis(&a)
                .map_err(AwsError::Config)?
                .into_iter()
                .collect();
        }
        o.default_ami = var("GLINT_AWS_DEFAULT_AMI");
        o.subnet = var("GLINT_AWS_SUBNET");
        o.vpc = var("GLINT_AWS_VPC");
        o.endpoint_cidr = var("GLINT_AWS_ENDPOINT_CIDR");
        if let Some(r) = var("GLINT_AWS_RESYNC") {
            o.resync = parse_duration(&r)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    AwsError::Config(format!(
                        "GLINT_AWS_RESYNC: expected a duration above zero such as 5s or 500ms, found `{r}`"
                    ))
                })?;
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ami_maps_are_parsed() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
        let d = Digest::of(b"x");
        assert_eq!(
            parse_amis(&format!("{d}=ami-1, ")),
            Ok(vec![(d.clone(), "ami-1".to_owned())])
        );
        assert!(
            parse_amis("web=ami-1")
                .unwrap_err()
                .contains("image digest")
        );
        assert!(
            parse_amis(&format!("{d}=i-1"))
                .unwrap_err()
                .contains("AMI id")
        );
        assert!(parse_amis("nonsense").unwrap_err().contains("DIGEST=ami-"));
    }
}

//! The Elastic Load Balancing v2 calls Glint makes, typed: target groups
//! (describe, create, attributes), targets (register, deregister, health).
//! Parameters are flattened the Query API's way (`Targets.member.1.Id`).

use crate::client::{Api, Client};
use crate::error::AwsError;
use crate::xml;
use std::collections::BTreeMap;

/// One target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// The port targets are registered on by default.
    pub port: Option<u16>,
}

/// One registered target and its health as ELB sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The instance id.
    pub id: String,
    /// The port.
    pub port: Option<u16>,
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`.
    pub state: String,
}

/// What a new target group checks and how it is made.
#[derive(Debug, Clone)]
pub struct NewTargetGroup {
    /// Its name (at most 32 characters: letters, digits, `-`).
    pub name: String,
    /// `HTTP` or `TCP`.
    pub protocol: String,
    /// The targets' port.
    pub port: u16,
    /// The VPC.
    pub vpc: String,
    /// The health check's path (HTTP), if any.
    pub health_path: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

fn response(action: &str, reason: impl Into<String>) -> AwsError {
    AwsError::Response {
        action: action.to_owned(),
        reason: reason.into(),
    }
}

/// The `<member>` children of the child element `name`.
fn members<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    xml::child(node, name)
        .map(|list| {
            list.children()
                .filter(|n| n.is_element() && n.tag_name().name() == "member")
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a DescribeTargetGroups or CreateTargetGroup answer.
pub fn parse_target_groups(action: &str, body: &str) -> Result<Vec<TargetGroup>, AwsError> {
    let doc = roxmltree::Document::parse(body).map_err(|e| response(action, e.to_string()))?;
    Ok(xml::descendants(doc.root_element(), "TargetGroups")
        .flat_map(|list| {
            list.children()
                .filter(|n| n.is_element() && n.tag_name().name() == "member")
                .collect::<Vec<_>>()
        })
        .filter_map(|m| {
            Some(TargetGroup {
                arn: xml::text(m, "TargetGroupArn")?,
                name: xml::text(m, "TargetGroupName").unwrap_or_default(),
                port: xml::text(m, "Port").and_then(|p| p.parse().ok()),
            })
        })
        .collect())
}

/// Parses a DescribeTargetHealth answer.
pub fn parse_target_health(body: &str) -> Result<Vec<TargetHealth>, AwsError> {
    let action = "DescribeTargetHealth";
    let doc = roxmltree::Document::parse(body).map_err(|e| response(action, e.to_string()))?;
    let Some(result) = xml::descendants(doc.root_element(), "DescribeTargetHealthResult").next()
    else {
        return Ok(Vec::new());
    };
    Ok(members(result, "TargetHealthDescriptions")
        .into_iter()
        .filter_map(|m| {
            Some(TargetHealth {
                id: xml::text_at(m, &["Target", "Id"])?,
                port: xml::text_at(m, &["Target", "Port"]).and_then(|p| p.parse().ok()),
                state: xml::text_at(m, &["TargetHealth", "State"]).unwrap_or_default(),
            })
        })
        .collect())
}

fn targets(params: &mut Vec<(String, String)>, targets: &[(String, u16)]) {
    for (i, (id, port)) in targets.iter().enumerate() {
        params.push((format!("Targets.member.{}.Id", i + 1), id.clone()));
        params.push((format!("Targets.member.{}.Port", i + 1), port.to_string()));
    }
}

/// ELBv2 on a [`Client`].
#[derive(Debug, Clone)]
pub struct Elbv2 {
    client: Client,
}

impl Elbv2 {
    /// ELBv2 through `client`.
    pub fn new(client: Client) -> Elbv2 {
        Elbv2 { client }
    }

    /// The target group named `name`, if it exists.
    pub async fn target_group(&self, name: &str) -> Result<Option<TargetGroup>, AwsError> {
        let action = "DescribeTargetGroups";
        match self
            .client
            .call(
                Api::Elbv2,
                action,
                &[("Names.member.1".to_owned(), name.to_owned())],
            )
            .await
        {
            Ok(body) => Ok(parse_target_groups(action, &body)?.into_iter().next()),
            Err(e) if e.code() == Some("TargetGroupNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// CreateTargetGroup (instance targets), tagged. Idempotent in AWS for
    /// the same settings.
    pub async fn create_target_group(&self, g: &NewTargetGroup) -> Result<TargetGroup, AwsError> {
        let action = "CreateTargetGroup";
        let mut params = vec![
            ("Name".to_owned(), g.name.clone()),
            ("Protocol".to_owned(), g.protocol.clone()),
            ("Port".to_owned(), g.port.to_string()),
            ("VpcId".to_owned(), g.vpc.clone()),
            ("TargetType".to_owned(), "instance".to_owned()),
        ];
        if let Some(path) = &g.health_path {
            params.push(("HealthCheckPath".to_owned(), path.clone()));
        }
        for (i, (k, v)) in g.tags.iter().enumerate() {
            params.push((format!("Tags.member.{}.Key", i + 1), k.clone()));
            params.push((format!("Tags.member.{}.Value", i + 1), v.clone()));
        }
        let body = self.client.call(Api::Elbv2, action, &params).await?;
        parse_target_groups(action, &body)?
            .into_iter()
            .next()
            .ok_or_else(|| response(action, "no target group in the answer"))
    }

    /// Sets the deregistration delay (how long ELB drains a deregistered
    /// target) of a target group.
    pub async fn set_deregistration_delay(&self, arn: &str, seconds: u64) -> Result<(), AwsError> {
        self.client
            .call(
                Api::Elbv2,
                "ModifyTargetGroupAttributes",
                &[
                    ("TargetGroupArn".to_owned(), arn.to_owned()),
                    (
                        "Attributes.member.1.Key".to_owned(),
                        "deregistration_delay.timeout_seconds".to_owned(),
                    ),
                    ("Attributes.member.1.Value".to_owned(), seconds.to_string()),
                ],
            )
            .await
            .map(|_| ())
    }

    /// RegisterTargets (instance id, port).
    pub async fn register(&self, arn: &str, list: &[(String, u16)]) -> Result<(), AwsError> {
        if list.is_empty() {
            return Ok(());
        }
        let mut params = vec![("TargetGroupArn".to_owned(), arn.to_owned())];
        targets(&mut params, list);
        self.client
            .call(Api::Elbv2, "RegisterTargets", &params)
            .await
            .map(|_| ())
    }

    /// DeregisterTargets (instance id, port).
    pub async fn deregister(&self, arn: &str, list: &[(String, u16)]) -> Result<(), AwsError> {
        if list.is_empty() {
            return Ok(());
        }
        let mut params = vec![("TargetGroupArn".to_owned(), arn.to_owned())];
        targets(&mut params, list);
        self.client
            .call(Api::Elbv2, "DeregisterTargets", &params)
            .await
            .map(|_| ())
    }

    /// DescribeTargetHealth: every registered target.
    pub async fn health(&self, arn: &str) -> Result<Vec<TargetHealth>, AwsError> {
        let body = self
            .client
            .call(
                Api::Elbv2,
                "DescribeTargetHealth",
                &[("TargetGroupArn".to_owned(), arn.to_owned())],
            )
            .await?;
        parse_target_health(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed() {
        let body = r#"<DescribeTargetGroupsResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
<DescribeTargetGroupsResult><TargetGroups><member><TargetGroupArn>arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/gl-web/1</TargetGroupArn><TargetGroupName>gl-web</TargetGroupName><Port>8080</Port></member></TargetGroups></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>"#;
        let g = parse_target_groups("DescribeTargetGroups", body).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name, "gl-web");
        assert_eq!(g[0].port, Some(8080));
        let body = r#"<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions>
<member><Target><Id>i-1</Id><Port>8080</Port></Target><TargetHealth><State>healthy</State></TargetHealth></member>
<member><Target><Id>i-2</Id><Port>8080</Port></Target><TargetHealth><State>draining</State></TargetHealth></member>
</TargetHealthDescriptions></DescribeTargetHealthResult></DescribeTargetHealthResponse>"#;
        let h = parse_target_health(body).unwrap();
        assert_eq!(
            h,
            vec![
                TargetHealth {
                    id: "i-1".into(),
                    port: Some(8080),
                    state: "healthy".into()
                },
                TargetHealth {
                    id: "i-2".into(),
                    port: Some(8080),
                    state: "draining".into()
                },
            ]
        );
    }
}

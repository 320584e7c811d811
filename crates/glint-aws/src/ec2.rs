//! The EC2 calls Glint makes, typed: instances (run, describe, terminate,
//! tag) and security groups (describe, create, authorise, revoke, delete).
//! Parameters are flattened the Query API's way (`TagSpecification.1.Tag.2.Key`).

use crate::client::{Api, Client};
use crate::error::AwsError;
use crate::rules::{Permission, Source};
use crate::xml;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One EC2 instance as DescribeInstances shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-…`.
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    /// Its private IPv4 address.
    pub private_ip: Option<String>,
    /// When it was launched.
    pub launch_time: Option<SystemTime>,
    /// `ami-…`.
    pub image_id: String,
    /// `t3.micro`.
    pub instance_type: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its security groups' ids.
    pub groups: Vec<String>,
}

/// What RunInstances is asked for.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The AMI.
    pub image_id: String,
    /// The instance type.
    pub instance_type: String,
    /// The idempotency token: a retried call with the same token makes no
    /// second instance.
    pub client_token: String,
    /// User data, already base64-encoded.
    pub user_data: String,
    /// Security groups to put it in.
    pub security_groups: Vec<String>,
    /// Subnet, when not the default VPC's.
    pub subnet: Option<String>,
    /// Tags on the instance (applied atomically with the launch).
    pub tags: BTreeMap<String, String>,
}

/// One security group as DescribeSecurityGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its VPC.
    pub vpc: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its ingress permissions, one per source.
    pub ingress: Vec<Permission>,
}

/// Parses EC2's `2026-12-03T13:40:00.000Z`.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let time = time.trim_end_matches('Z');
    let time = time.split(['+']).next()?;
    let mut t = time.split(':');
    let h: u64 = t.next()?.parse().ok()?;
    let min: u64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
    let days = crate::sigv4::days_from_civil(y, m, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + min * 60;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_secs_f64(sec.max(0.0)))
}

fn push_filters(params: &mut Vec<(String, String)>, filters: &[(&str, Vec<String>)]) {
    for (i, (name, values)) in filters.iter().enumerate() {
        let n = i + 1;
        params.push((format!("Filter.{n}.Name"), (*name).to_owned()));
        for (j, v) in values.iter().enumerate() {
            params.push((format!("Filter.{n}.Value.{}", j + 1), v.clone()));
        }
    }
}

fn response(action: &str, reason: impl Into<String>) -> AwsError {
    AwsError::Response {
        action: action.to_owned(),
        reason: reason.into(),
    }
}

fn parse_instance(node: roxmltree::Node<'_, '_>) -> Option<Instance> {
    Some(Instance {
        id: xml::text(node, "instanceId")?,
        state: xml::text_at(node, &["instanceState", "name"]).unwrap_or_default(),
        private_ip: xml::text(node, "privateIpAddress").filter(|s| !s.is_empty()),
        launch_time: xml::text(node, "launchTime").and_then(|t| parse_time(&t)),
        image_id: xml::text(node, "imageId").unwrap_or_default(),
        instance_type: xml::text(node, "instanceType").unwrap_or_default(),
        tags: xml::tags(node),
        groups: xml::items(node, "groupSet")
            .into_iter()
            .filter_map(|g| xml::text(g, "groupId"))
            .collect(),
    })
}

/// Parses a RunInstances or DescribeInstances answer's instances.
pub fn parse_instances(action: &str, body: &str) -> Result<Vec<Instance>, AwsError> {
    let doc = roxmltree::Document::parse(body).map_err(|e| response(action, e.to_string()))?;
    Ok(xml::descendants(doc.root_element(), "instancesSet")
        .flat_map(|set| {
            set.children()
                .filter(|n| n.is_element() && n.tag_name().name() == "item")
                .collect::<Vec<_>>()
        })
        .filter_map(parse_instance)
        .collect())
}

/// Parses one `ipPermissions` item into one [`Permission`] per source.
fn parse_permissions(item: roxmltree::Node<'_, '_>) -> Vec<Permission> {
    let protocol = xml::text(item, "ipProtocol").unwrap_or_default();
    let from: i32 = xml::text(item, "fromPort")
        .and_then(|p| p.parse().ok())
        .unwrap_or(-1);
    let to: i32 = xml::text(item, "toPort")
        .and_then(|p| p.parse().ok())
        .unwrap_or(-1);
    let mut out = Vec::new();
    let mut one = |source| {
        out.push(Permission {
            protocol: protocol.clone(),
            from_port: from,
            to_port: to,
            source,
        })
    };
    for r in xml::items(item, "ipRanges") {
        if let Some(c) = xml::text(r, "cidrIp") {
            one(Source::Cidr(c));
        }
    }
    for r in xml::items(item, "ipv6Ranges") {
        if let Some(c) = xml::text(r, "cidrIpv6") {
            one(Source::Cidr(c));
        }
    }
    for g in xml::items(item, "groups") {
        if let Some(id) = xml::text(g, "groupId") {
            one(Source::Group(id));
        }
    }
    for p in xml::items(item, "prefixListIds") {
        if let Some(id) = xml::text(p, "prefixListId") {
            one(Source::PrefixList(id));
        }
    }
    out
}

/// Parses a DescribeSecurityGroups answer.
pub fn parse_security_groups(body: &str) -> Result<Vec<SecurityGroup>, AwsError> {
    let action = "DescribeSecurityGroups";
    let doc = roxmltree::Document::parse(body).map_err(|e| response(action, e.to_string()))?;
    Ok(xml::items(doc.root_element(), "securityGroupInfo")
        .into_iter()
        .filter_map(|g| {
            Some(SecurityGroup {
                id: xml::text(g, "groupId")?,
                name: xml::text(g, "groupName").unwrap_or_default(),
                vpc: xml::text(g, "vpcId").filter(|v| !v.is_empty()),
                tags: xml::tags(g),
                ingress: xml::items(g, "ipPermissions")
                    .into_iter()
                    .flat_map(parse_permissions)
                    .collect(),
            })
        })
        .collect())
}

/// The `IpPermissions.N` parameters of one call.
fn permission_params(perms: &[Permission]) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for (i, p) in perms.iter().enumerate() {
        let k = format!("IpPermissions.{}", i + 1);
        params.push((format!("{k}.IpProtocol"), p.protocol.clone()));
        params.push((format!("{k}.FromPort"), p.from_port.to_string()));
        params.push((format!("{k}.ToPort"), p.to_port.to_string()));
        match &p.source {
            Source::Cidr(c) if c.contains(':') => {
                params.push((format!("{k}.Ipv6Ranges.1.CidrIpv6"), c.clone()));
            }
            Source::Cidr(c) => params.push((format!("{k}.IpRanges.1.CidrIp"), c.clone())),
            Source::Group(g) => params.push((format!("{k}.Groups.1.GroupId"), g.clone())),
            Source::PrefixList(id) => {
                params.push((format!("{k}.PrefixListIds.1.PrefixListId"), id.clone()));
            }
        }
    }
    params
}

fn push_tags(params: &mut Vec<(String, String)>, prefix: &str, tags: &BTreeMap<String, String>) {
    for (i, (k, v)) in tags.iter().enumerate() {
        params.push((format!("{prefix}.Tag.{}.Key", i + 1), k.clone()));
        params.push((format!("{prefix}.Tag.{}.Value", i + 1), v.clone()));
    }
}

/// EC2 on a [`Client`].
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
}

impl Ec2 {
    /// EC2 through `client`.
    pub fn new(client: Client) -> Ec2 {
        Ec2 { client }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// RunInstances for exactly one instance, attempted once: the caller
    /// retries, after checking (by tag) that the previous attempt made no
    /// instance — the `ClientToken` makes AWS itself return the first
    /// instance to a retry, but emulators such as moto ignore it.
    pub async fn run_instance(&self, req: &RunRequest) -> Result<Instance, AwsError> {
        let action = "RunInstances";
        let mut params = vec![
            ("ImageId".to_owned(), req.image_id.clone()),
            ("InstanceType".to_owned(), req.instance_type.clone()),
            ("MinCount".to_owned(), "1".to_owned()),
            ("MaxCount".to_owned(), "1".to_owned()),
            ("ClientToken".to_owned(), req.client_token.clone()),
            ("UserData".to_owned(), req.user_data.clone()),
        ];
        for (i, g) in req.security_groups.iter().enumerate() {
            params.push((format!("SecurityGroupId.{}", i + 1), g.clone()));
        }
        if let Some(s) = &req.subnet {
            params.push(("SubnetId".to_owned(), s.clone()));
        }
        params.push((
            "TagSpecification.1.ResourceType".to_owned(),
            "instance".to_owned(),
        ));
        push_tags(&mut params, "TagSpecification.1", &req.tags);
        let body = self.client.call_once(Api::Ec2, action, &params).await?;
        parse_instances(action, &body)?
            .into_iter()
            .next()
            .ok_or_else(|| response(action, "no instance in the answer"))
    }

    /// DescribeInstances with `filters` (`tag:KEY` and others), every page.
    pub async fn describe_instances(
        &self,
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<Instance>, AwsError> {
        let action = "DescribeInstances";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = Vec::new();
            push_filters(&mut params, filters);
            if let Some(t) = &token {
                params.push(("NextToken".to_owned(), t.clone()));
            }
            let body = self.client.call(Api::Ec2, action, &params).await?;
            out.extend(parse_instances(action, &body)?);
            let doc =
                roxmltree::Document::parse(&body).map_err(|e| response(action, e.to_string()))?;
            token = xml::text(doc.root_element(), "nextToken").filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// TerminateInstances.
    pub async fn terminate_instances(&self, ids: &[String]) -> Result<(), AwsError> {
        if ids.is_empty() {
            return Ok(());
        }
        let params: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("InstanceId.{}", i + 1), id.clone()))
            .collect();
        self.client
            .call(Api::Ec2, "TerminateInstances", &params)
            .await
            .map(|_| ())
    }

    /// DescribeSecurityGroups with `filters`.
    pub async fn describe_security_groups(
        &self,
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        let mut params = Vec::new();
        push_filters(&mut params, filters);
        let body = self
            .client
            .call(Api::Ec2, "DescribeSecurityGroups", &params)
            .await?;
        parse_security_groups(&body)
    }

    /// CreateSecurityGroup (in the default VPC unless `vpc` is given), tagged;
    /// returns its id.
    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        let action = "CreateSecurityGroup";
        let mut params = vec![
            ("GroupName".to_owned(), name.to_owned()),
            ("GroupDescription".to_owned(), description.to_owned()),
            (
                "TagSpecification.1.ResourceType".to_owned(),
                "security-group".to_owned(),
            ),
        ];
        if let Some(v) = vpc {
            params.push(("VpcId".to_owned(), v.to_owned()));
        }
        push_tags(&mut params, "TagSpecification.1", tags);
        let body = self.client.call(Api::Ec2, action, &params).await?;
        let doc = roxmltree::Document::parse(&body).map_err(|e| response(action, e.to_string()))?;
        xml::text(doc.root_element(), "groupId")
            .ok_or_else(|| response(action, "no groupId in the answer"))
    }

    /// AuthorizeSecurityGroupIngress.
    pub async fn authorize_ingress(
        &self,
        group: &str,
        perms: &[Permission],
    ) -> Result<(), AwsError> {
        if perms.is_empty() {
            return Ok(());
        }
        let mut params = vec![("GroupId".to_owned(), group.to_owned())];
        params.extend(permission_params(perms));
        self.client
            .call(Api::Ec2, "AuthorizeSecurityGroupIngress", &params)
            .await
            .map(|_| ())
    }

    /// RevokeSecurityGroupIngress.
    pub async fn revoke_ingress(&self, group: &str, perms: &[Permission]) -> Result<(), AwsError> {
        if perms.is_empty() {
            return Ok(());
        }
        let mut params = vec![("GroupId".to_owned(), group.to_owned())];
        params.extend(permission_params(perms));
        self.client
            .call(Api::Ec2, "RevokeSecurityGroupIngress", &params)
            .await
            .map(|_| ())
    }

    /// DeleteSecurityGroup.
    pub async fn delete_security_group(&self, group: &str) -> Result<(), AwsError> {
        self.client
            .call(
                Api::Ec2,
                "DeleteSecurityGroup",
                &[("GroupId".to_owned(), group.to_owned())],
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_parsed() {
        let t = parse_time("2015-08-30T12:36:00.000Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn security_groups_are_flattened_one_permission_per_source() {
        let body = r#"<DescribeSecurityGroupsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
<securityGroupInfo><item><groupId>sg-1</groupId><groupName>glint-web</groupName>
<ipPermissions><item><ipProtocol>tcp</ipProtocol><fromPort>8080</fromPort><toPort>8080</toPort>
<groups><item><userId>123</userId><groupId>sg-2</groupId></item></groups>
<ipRanges><item><cidrIp>10.0.0.0/8</cidrIp></item><item><cidrIp>203.0.113.7/32</cidrIp></item></ipRanges>
</item></ipPermissions>
<tagSet><item><key>dev.glint.service</key><value>web</value></item></tagSet></item></securityGroupInfo></DescribeSecurityGroupsResponse>"#;
        let groups = parse_security_groups(body).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].tags["dev.glint.service"], "web");
        let p = |source| Permission {
            protocol: "tcp".into(),
            from_port: 8080,
            to_port: 8080,
            source,
        };
        assert_eq!(
            groups[0].ingress,
            vec![
                p(Source::Cidr("10.0.0.0/8".into())),
                p(Source::Cidr("203.0.113.7/32".into())),
                p(Source::Group("sg-2".into())),
            ]
        );
    }
}

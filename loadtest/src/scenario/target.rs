//! Where a run goes: a local cluster started for it, or the servers given by URL.

use super::Plan;
use crate::cli::Common;
use crate::local::LocalCluster;
use anyhow::{bail, Context};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Where the clients and publishers go.
pub struct Setup {
    /// URLs clients connect to, round-robin.
    pub client_urls: Vec<String>,
    /// Server API bases.
    pub api_bases: Vec<String>,
    /// Server API key, when known.
    pub api_key: Option<String>,
    /// Token secret.
    pub secret: String,
    /// The local cluster, when one was started.
    pub cluster: Option<Arc<Mutex<LocalCluster>>>,
    /// For the report.
    pub description: String,
    /// Query parameter for clients' router stickiness keys.
    pub sticky_query: Option<String>,
}
fn random_hex() -> String {
    let t = crate::protocol::now_micros();
    format!(
        "{:016x}",
        t.rotate_left(17) ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}
/// Starts the local cluster, or checks the flags for remote servers.
pub async fn setup(common: &Common, plan: &Plan) -> anyhow::Result<Setup> {
    if let Some(n) = common.local {
        if n < plan.min_nodes {
            bail!("{} needs --local {} or more", plan.name, plan.min_nodes);
        }
        let secret = common
            .secret
            .clone()
            .unwrap_or_else(|| format!("lt-secret-{}", random_hex()));
        let key = common
            .api_key
            .clone()
            .unwrap_or_else(|| format!("lt-key-{}", random_hex()));
        let cluster = LocalCluster::start(n, &common.local_opts, &secret, &key).await?;
        let nodes = cluster.node_urls();
        let bases: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("http://{}", n.addr))
            .collect();
        let router = cluster.router_url();
        let (client_urls, api_bases) = if plan.cross_node {
            (nodes[1..].to_vec(), bases[..1].to_vec())
        } else {
            (router.clone().map_or(nodes, |r| vec![r]), bases)
        };
        let description = format!(
            "local: {n} node(s), {}{}",
            if n == 1 && common.local_opts.no_nats {
                "embedded broker"
            } else {
                "nats-server"
            },
            match (&router, plan.cross_node) {
                (Some(_), false) => ", clients through herald-router",
                (Some(_), true) => ", router not used (cross-node)",
                (None, _) => ", clients spread over the nodes",
            }
        );
        let sticky_query = match (&router, plan.cross_node) {
            (Some(_), false) => Some(crate::local::STICKY_QUERY.to_owned()),
            _ => None,
        };
        return Ok(Setup {
            sticky_query,
            client_urls,
            api_bases,
            api_key: Some(key),
            secret,
            cluster: Some(Arc::new(Mutex::new(cluster))),
            description,
        });
    }
    if plan.needs_local {
        bail!("{} injects failures and needs --local N", plan.name);
    }
    if common.url.is_empty() {
        bail!("give --url ws://host:port (repeatable) or --local N");
    }
    let secret = common
        .secret
        .clone()
        .context("--secret (the servers' HMAC token secret) is required with --url")?;
    let mut api_bases = common.api_url.clone();
    if api_bases.is_empty() {
        for u in &common.url {
            api_bases.push(
                crate::ws::Target::parse(u)
                    .await
                    .map_err(anyhow::Error::msg)?
                    .http_base(),
            );
        }
    }
    let client_urls = if plan.cross_node {
        if common.url.len() < 2 {
            bail!(
                "{} needs two --url (publish on the first, receive on the others)",
                plan.name
            );
        }
        api_bases.truncate(1);
        common.url[1..].to_vec()
    } else {
        common.url.clone()
    };
    if plan.api_publish.is_some() && common.api_key.is_none() {
        bail!(
            "{} publishes through the server API: give --api-key",
            plan.name
        );
    }
    Ok(Setup {
        client_urls,
        api_bases,
        api_key: common.api_key.clone(),
        secret,
        cluster: None,
        description: common.url.join(", "),
        sticky_query: common.sticky_query.clone(),
    })
}

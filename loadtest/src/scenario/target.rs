//! Where a run goes: a local cluster started for it, or the servers given by URL.

use super::Plan;
use crate::api::ApiAuth;
use crate::cli::{Common, Protocol};
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
    /// How the server API is called.
    pub api_auth: ApiAuth,
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
    if common.protocol == Protocol::Pusher && (plan.name != "fanout" || common.local.is_some()) {
        bail!("--protocol pusher drives the fanout scenario against --url servers only");
    }
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
        let routers = cluster.router_urls();
        let (client_urls, api_bases) = if plan.cross_node {
            (nodes[1..].to_vec(), bases[..1].to_vec())
        } else if routers.is_empty() {
            (nodes, bases)
        } else {
            (routers.clone(), bases)
        };
        let description = format!(
            "local: {n} node(s), {}{}",
            if n == 1 && common.local_opts.no_nats {
                "embedded broker"
            } else {
                "nats-server"
            },
            match (routers.len(), plan.cross_node) {
                (0, _) => ", clients spread over the nodes".to_owned(),
                (_, true) => ", router not used (cross-node)".to_owned(),
                (1, false) => ", clients through herald-router".to_owned(),
                (r, false) => format!(", clients spread over {r} herald-routers"),
            }
        );
        let sticky_query = (!routers.is_empty() && !plan.cross_node)
            .then(|| crate::local::STICKY_QUERY.to_owned());
        return Ok(Setup {
            sticky_query,
            client_urls,
            api_bases,
            api_auth: ApiAuth::ApiKey(key),
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
    // An empty secret makes clients connect without a token.
    let secret = match (&common.secret, common.no_token) {
        (_, true) => String::new(),
        (Some(s), false) => s.clone(),
        (None, false) => bail!("--secret (the servers' HMAC token secret, or the Pusher app secret) is required with --url, unless --no-token"),
    };
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
    let mut client_urls = if plan.cross_node {
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
    let api_auth = match common.protocol {
        Protocol::Centrifugo => ApiAuth::ApiKey(common.api_key.clone().unwrap_or_default()),
        Protocol::Pusher => {
            let app = crate::pusher::App {
                id: common
                    .app_id
                    .clone()
                    .context("--protocol pusher needs --app-id")?,
                key: common
                    .api_key
                    .clone()
                    .context("--protocol pusher needs --api-key (the app key)")?,
                secret: secret.clone(),
            };
            // Clients connect to /app/{key}: the URLs give the server, not the path.
            for url in &mut client_urls {
                let host = url
                    .strip_prefix("ws://")
                    .and_then(|r| r.split('/').next())
                    .with_context(|| format!("{url:?}: expected ws://host:port"))?;
                *url = format!(
                    "ws://{host}/app/{}?{}",
                    app.key,
                    crate::pusher::CLIENT_QUERY
                );
            }
            ApiAuth::Pusher(app)
        }
    };
    Ok(Setup {
        client_urls,
        api_bases,
        api_auth,
        secret,
        cluster: None,
        description: common.url.join(", "),
        sticky_query: common.sticky_query.clone(),
    })
}

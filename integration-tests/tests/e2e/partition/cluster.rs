//! A 3-node JetStream cluster with every server, gateway and generator in a network namespace
//! of its own (see `netns`). Each service is given one server's address, its home: gateway
//! `a0` lives by `n0`; gateway `a1` and generator `g1` by `n1`; generator `g2` by `n2`. A
//! "side" is a server with the services that live by it.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use tempfile::TempDir;

use crate::harness::*;
use crate::netns::Net;

pub const NODES: [&str; 3] = ["n0", "n1", "n2"];
/// Gateways and their home server.
const GATEWAYS: [(&str, &str); 2] = [("a0", "n0"), ("a1", "n1")];
/// Generators and their home server.
const GENERATORS: [(&str, &str); 2] = [("g1", "n1"), ("g2", "n2")];
const MEMBERS: [&str; 7] = ["n0", "n1", "n2", "a0", "a1", "g1", "g2"];

const START: Duration = Duration::from_secs(90);

/// The cluster, its services and their namespaces. Fields drop in order: processes first,
/// then the namespaces.
pub struct NsCluster {
    pub gateways: Vec<Service>,
    pub generators: Vec<Service>,
    _nodes: Vec<Proc>,
    _dirs: Vec<TempDir>,
    pub net: Net,
}

/// Servers ping their peers and clients every 2 s (3 missed pings end a connection), so a
/// cut route is noticed in seconds rather than the default 2 minutes; the cluster advertises
/// no client addresses, so a service only ever uses the cluster-network URLs it was given.
fn server_conf(net: &Net, node: &str, store: &std::path::Path) -> String {
    let routes = NODES
        .iter()
        .map(|n| format!("nats://{}:6222", net.cluster_ip(n)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "server_name: {node}\nlisten: 0.0.0.0:4222\nping_interval: \"2s\"\nping_max: 3\n\
         jetstream {{ store_dir: \"{}\" }}\n\
         cluster {{\n  name: sn\n  listen: {}:6222\n  no_advertise: true\n  routes: [{routes}]\n}}\n",
        store.display(),
        net.cluster_ip(node),
    )
}

fn wait_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl NsCluster {
    /// Starts the servers, then the services (generators with `generator_env`), and waits
    /// until the R3 stream exists and every service is ready.
    pub async fn start(generator_env: &[(&str, &str)]) -> NsCluster {
        let net = Net::new(&MEMBERS);
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for node in NODES {
            let dir = tempdir();
            let conf = dir.path().join("nats.conf");
            std::fs::write(&conf, server_conf(&net, node, &dir.path().join("js"))).unwrap();
            let mut cmd = net.command(node, nats_server_program());
            cmd.arg("-c").arg(&conf);
            nodes.push(spawn_command(cmd, &format!("nats-{node}")));
            dirs.push(dir);
        }
        for node in NODES {
            let addr = SocketAddr::from((net.observer_ip(node), 4222));
            assert!(wait_tcp(addr, START), "{node} did not listen");
        }
        // One address each, as a service address would be: a client shuffles a list of
        // servers, and a side must be known to hold the services it is said to hold.
        let urls = |home: &str| format!("nats://{}:4222", net.cluster_ip(home));
        let mut gateways = Vec::new();
        for (name, home) in GATEWAYS {
            let mut cmd = net.command(name, binary("gateway"));
            cmd.env("NATS_URL", urls(home))
                .env("HTTP_ADDR", "0.0.0.0:8080")
                .env("STREAM_REPLICAS", "3")
                .env("RUST_LOG", "info,gateway=debug")
                .env_remove("API_TOKEN")
                .env("AUTH", "off")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
            gateways.push(Service {
                proc: spawn_command(cmd, &format!("gateway-{name}")),
                addr: (net.observer_ip(name), 8080).into(),
                http: http_client(),
            });
        }
        let mut generators = Vec::new();
        for (name, home) in GENERATORS {
            let dir = tempdir();
            let mut cmd = net.command(name, binary("generator"));
            cmd.env("NATS_URL", urls(home))
                .env("ADMIN_ADDR", "0.0.0.0:9090")
                .env("DATA_DIR", dir.path())
                .env("STREAM_REPLICAS", "3")
                .env("RUST_LOG", "info,generator=debug")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
            for (k, v) in generator_env {
                cmd.env(k, v);
            }
            generators.push(Service {
                proc: spawn_command(cmd, &format!("generator-{name}")),
                addr: (net.observer_ip(name), 9090).into(),
                http: http_client(),
            });
            dirs.push(dir);
        }
        let cluster = NsCluster {
            gateways,
            generators,
            _nodes: nodes,
            _dirs: dirs,
            net,
        };
        for s in cluster.gateways.iter().chain(&cluster.generators) {
            let url = s.url("/readyz");
            wait_for(
                &format!("{} ready", s.proc.log.display()),
                START,
                || async {
                    let r = s.http.get(&url).send().await.ok()?;
                    r.status().is_success().then_some(())
                },
            )
            .await;
        }
        cluster
    }

    /// The members of a server's side: the server and the services that live by it.
    pub fn side(node: &str) -> Vec<&'static str> {
        let services = GATEWAYS.iter().chain(&GENERATORS);
        std::iter::once(*NODES.iter().find(|n| **n == node).unwrap())
            .chain(services.filter(|(_, home)| *home == node).map(|(s, _)| *s))
            .collect()
    }

    /// The generator's member name, by index in `generators`.
    pub fn generator_name(i: usize) -> &'static str {
        GENERATORS[i].0
    }

    /// A client of `node` on the observer network (never cut). What it tells of the stream
    /// is what that server's side of a partition sees.
    pub async fn observer_of(&self, node: &str) -> async_nats::Client {
        async_nats::connect(format!("nats://{}:4222", self.net.observer_ip(node)))
            .await
            .unwrap()
    }

    /// A client of `n0` on the observer network, for when the network is whole.
    pub async fn observer(&self) -> async_nats::Client {
        self.observer_of(NODES[0]).await
    }

    /// The leaders of the stream and of the generators' consumer, as the cluster reports them.
    pub async fn leaders(js: &jetstream::Context) -> Option<(String, String)> {
        let info = js.get_stream("SN").await.ok()?.info().await.ok()?.clone();
        let stream = info.cluster?.leader?;
        let mut consumer = js
            .get_consumer_from_stream::<pull::Config, _, _>("generator", "SN")
            .await
            .ok()?;
        let consumer = consumer.info().await.ok()?.cluster.clone()?.leader?;
        Some((stream, consumer))
    }

    /// Moves the leadership of the stream and of the consumer to `node` (asks the current
    /// leader to step down, naming `node` as preferred, until it is the leader).
    pub async fn move_leaders(&self, node: &str) {
        let client = self.observer().await;
        let js = jetstream::new(client.clone());
        let request = serde_json::json!({"placement": {"preferred": node}}).to_string();
        wait_for(&format!("the leaders to move to {node}"), START, || async {
            let (stream, consumer) = Self::leaders(&js).await?;
            if stream != node {
                let _ = client
                    .request("$JS.API.STREAM.LEADER.STEPDOWN.SN", request.clone().into())
                    .await;
            } else if consumer != node {
                let _ = client
                    .request(
                        "$JS.API.CONSUMER.LEADER.STEPDOWN.SN.generator",
                        request.clone().into(),
                    )
                    .await;
            } else {
                return Some(());
            }
            // A new leader is being elected: ask again once there is one.
            let _ = wait_leaders(&js, Duration::from_secs(10)).await;
            None
        })
        .await;
    }

    /// Waits until the stream and the consumer have a leader and every replica of both is
    /// current (after a heal: the servers that were cut off have caught up).
    pub async fn wait_replicas_current(&self, timeout: Duration) {
        let js = jetstream::new(self.observer().await);
        wait_for("every replica current", timeout, || async {
            let info = js.get_stream("SN").await.ok()?.info().await.ok()?.clone();
            let cluster = info.cluster?;
            cluster.leader.as_ref()?;
            let stream_ok = cluster.replicas.len() == 2
                && cluster.replicas.iter().all(|r| r.current && !r.offline);
            let mut consumer = js
                .get_consumer_from_stream::<pull::Config, _, _>("generator", "SN")
                .await
                .ok()?;
            let cc = consumer.info().await.ok()?.cluster.clone()?;
            cc.leader.as_ref()?;
            let consumer_ok =
                cc.replicas.len() == 2 && cc.replicas.iter().all(|r| r.current && !r.offline);
            (stream_ok && consumer_ok).then_some(())
        })
        .await;
    }
}

async fn wait_leaders(js: &jetstream::Context, timeout: Duration) -> Option<(String, String)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(l) = NsCluster::leaders(js).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

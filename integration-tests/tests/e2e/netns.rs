//! Network namespaces for partition tests: every member (a nats-server, a gateway, a
//! generator) runs in a namespace of its own, plugged into a test-owned hub namespace by two
//! veth pairs:
//!
//! - `eth0`, the cluster network (10.90.0.0/24, the same in every test: it exists only inside
//!   the test's namespaces). Its hub end sits on one of the hub's bridges; members on the same
//!   bridge reach each other, members on different bridges do not. A partition moves hub ends
//!   between bridges (packets to the other side are silently lost, as on a real cut); a link
//!   can also be set down. Routes, client connections and raft traffic all use this network.
//! - `eth1`, the observer network (10.213.<n>.0/24, unique per test), which also reaches the
//!   test process in the root namespace. It is never cut: the test reaches the gateways' HTTP
//!   and the servers' client ports through it. Nothing else uses it: services are given the
//!   servers' cluster addresses only, and the servers advertise no client addresses.
//!
//! The hub namespace's name is taken with an exclusive create, so tests in parallel each get
//! their own `<n>`. Everything is removed on drop (removing the hub removes every veth).

use std::net::Ipv4Addr;
use std::process::Command;

/// Why namespaces cannot be made here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Some(format!("`ip -V` failed: {}", stderr(&out))),
        Err(e) => return Some(format!("no `ip` command (iproute2): {e}")),
    }
    let probe = format!("snprobe{}", std::process::id());
    let out = match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(out) => out,
        Err(e) => return Some(format!("cannot run ip: {e}")),
    };
    if !out.status.success() {
        return Some(format!(
            "cannot create a network namespace (root needed): {}",
            stderr(&out)
        ));
    }
    let bridge = Command::new("ip")
        .args(["-n", &probe, "link", "add", "br0", "type", "bridge"])
        .output();
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    match bridge {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("cannot create a bridge: {}", stderr(&out))),
        Err(e) => Some(format!("cannot run ip: {e}")),
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Runs `ip` with `args`; panics with its error output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        stderr(&out)
    );
}

/// A test's namespaces, removed on drop.
pub struct Net {
    hub: String,
    subnet: u8,
    members: Vec<String>,
}

impl Net {
    /// One namespace per member, all on one cluster network and on the observer network.
    pub fn new(members: &[&str]) -> Net {
        assert!(members.len() < 200);
        let start = (std::process::id() as usize).wrapping_mul(7919) % 250;
        let (subnet, hub) = (0..250)
            .map(|k| ((start + k) % 250) as u8)
            .find_map(|n| {
                let hub = format!("snp{n}");
                let taken = Command::new("ip")
                    .args(["netns", "add", &hub])
                    .output()
                    .unwrap();
                taken.status.success().then_some((n, hub))
            })
            .expect("no free namespace name snp0..snp249");
        let net = Net {
            hub,
            subnet,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        };
        let hub = net.hub.as_str();
        ip(&["-n", hub, "link", "set", "lo", "up"]);
        // The observer bridge, and one cluster bridge per member (enough for any split).
        for bridge in std::iter::once("obs".to_owned()).chain(net.bridges()) {
            ip(&["-n", hub, "link", "add", &bridge, "type", "bridge"]);
            ip(&["-n", hub, "link", "set", &bridge, "up"]);
        }
        // The test process's end of the observer network.
        let root = net.root_link();
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "root", "netns", hub,
        ]);
        ip(&["-n", hub, "link", "set", "root", "master", "obs", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("10.213.{subnet}.1/24"),
            "dev",
            &root,
        ]);
        ip(&["link", "set", &root, "up"]);
        for (i, member) in members.iter().enumerate() {
            let ns = net.ns(member);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let (c, o) = (format!("c{i}"), format!("o{i}"));
            for (end, dev, bridge, addr) in [
                (&c, "eth0", "b0", net.cluster_ip(member)),
                (&o, "eth1", "obs", net.observer_ip(member)),
            ] {
                ip(&[
                    "-n", hub, "link", "add", end, "type", "veth", "peer", "name", dev, "netns",
                    &ns,
                ]);
                ip(&["-n", hub, "link", "set", end, "master", bridge, "up"]);
                ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
                ip(&["-n", &ns, "link", "set", dev, "up"]);
            }
        }
        net
    }

    fn bridges(&self) -> impl Iterator<Item = String> {
        (0..self.members.len()).map(|j| format!("b{j}"))
    }

    fn root_link(&self) -> String {
        self.hub.clone()
    }

    fn index(&self, member: &str) -> usize {
        self.members
            .iter()
            .position(|m| m == member)
            .unwrap_or_else(|| panic!("no member {member}"))
    }

    /// The namespace a member runs in.
    pub fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.hub)
    }

    /// A member's address on the cluster network (the one that is cut).
    pub fn cluster_ip(&self, member: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, 90, 0, 10 + self.index(member) as u8)
    }

    /// A member's address on the observer network (never cut; reachable from the test).
    pub fn observer_ip(&self, member: &str) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 10 + self.index(member) as u8)
    }

    /// A command that runs `program` inside the member's namespace.
    pub fn command(&self, member: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(member)]).arg(program);
        cmd
    }

    /// Splits the cluster network into `groups`: members of one group reach each other and
    /// nobody else. Every member must be in exactly one group. Links set down stay down.
    pub fn partition(&self, groups: &[&[&str]]) {
        let mut placed = vec![false; self.members.len()];
        for (j, group) in groups.iter().enumerate() {
            for member in *group {
                let i = self.index(member);
                assert!(!placed[i], "{member} is in two groups");
                placed[i] = true;
                ip(&[
                    "-n",
                    &self.hub,
                    "link",
                    "set",
                    &format!("c{i}"),
                    "master",
                    &format!("b{j}"),
                ]);
            }
        }
        assert!(
            placed.iter().all(|p| *p),
            "every member must be in a group: {groups:?}"
        );
    }

    /// Cuts `member` off from every other member (the others stay as they are).
    pub fn isolate(&self, member: &str) {
        let last = format!("b{}", self.members.len() - 1);
        let i = self.index(member);
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            &format!("c{i}"),
            "master",
            &last,
        ]);
    }

    /// Sets a member's cluster link down (`false`) or up (`true`).
    pub fn link(&self, member: &str, up: bool) {
        let i = self.index(member);
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hub, "link", "set", &format!("c{i}"), state]);
    }

    /// Every member back on one cluster network, every link up.
    pub fn heal(&self) {
        for i in 0..self.members.len() {
            ip(&[
                "-n",
                &self.hub,
                "link",
                "set",
                &format!("c{i}"),
                "master",
                "b0",
                "up",
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // A namespace whose processes are still running lives on until they exit; its veths
        // go with the hub.
        for member in &self.members {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(member)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .output();
        // The root end goes with its peer; removed here too in case the hub lingers.
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_link()])
            .output();
    }
}

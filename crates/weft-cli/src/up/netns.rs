//! Namespaces mode (root on Linux): each workload in its own network namespace, joined to a
//! bridge on the host by a veth pair, with iptables rules that send its inbound TCP to its
//! sidecar's 15006 and its outbound TCP to 15001, except the proxy's own traffic (uid/gid 1337),
//! as Istio's init container does. Service names resolve through `/etc/netns/NS/hosts`, which
//! `ip netns exec` shows as `/etc/hosts` inside the namespace.
//!
//! Addresses: the bridge `weft-br0` is `10.77.0.1/24` (the control plane's xDS listens there);
//! workload `i` (from 1) is `10.77.0.(i+1)`; service `j` has the virtual IP `10.78.0.j`, reached
//! through the default route and captured before it leaves the namespace.
//!
//! Deleting a namespace deletes its veth pair and its iptables rules; [`teardown`] deletes the
//! namespaces, the bridge and the hosts files.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The bridge every workload namespace is attached to.
pub const BRIDGE: &str = "weft-br0";
/// The bridge's (host side) address: the control plane and the gateway are reached there.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The uid and gid the sidecars run as; their traffic is not captured.
pub const PROXY_UID: u32 = 1337;
/// Ports of the sidecar reached from outside without capture (admin, stats, health).
pub const EXCLUDED_INBOUND_PORTS: &[u16] = &[15000, 15020, 15021, 15090];

/// The network `weft up` made, recorded in `state.json` so that `weft down` can remove it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// The bridge, once created.
    pub bridge: Option<String>,
    /// The namespaces created.
    pub namespaces: Vec<String>,
}

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Not root.
    #[error(
        "namespaces mode needs root (network namespaces, veth pairs, iptables); run as root or use --mode loopback"
    )]
    NotRoot,
    /// The bridge exists.
    #[error(
        "{BRIDGE} exists: another namespaces-mode mesh is running (weft down stops it), or delete it: ip link del {BRIDGE}"
    )]
    Busy,
    /// A command failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        message: String,
    },
}

/// The namespace of a workload.
pub fn namespace_name(workload: &str) -> String {
    format!("weft-{workload}")
}

/// The workload address of workload `index` (from 1).
pub fn workload_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, index.saturating_add(1))
}

/// The virtual IP of service `index` (from 1).
pub fn service_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, index)
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), NetError> {
    let command = args.join(" ");
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(|e| NetError::Command {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetError::Command {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The iptables rules of a workload namespace (`iptables-restore` input), Istio's init rules
/// for REDIRECT mode.
pub fn iptables_rules() -> String {
    let mut r = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :ISTIO_INBOUND - [0:0]\n:ISTIO_IN_REDIRECT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n\
         -A PREROUTING -p tcp -j ISTIO_INBOUND\n-A OUTPUT -p tcp -j ISTIO_OUTPUT\n",
    );
    for p in EXCLUDED_INBOUND_PORTS {
        r.push_str(&format!("-A ISTIO_INBOUND -p tcp --dport {p} -j RETURN\n"));
    }
    r.push_str(&format!(
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n\
         -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n\
         -A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n\
         -A ISTIO_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN\n\
         -A ISTIO_OUTPUT -m owner --gid-owner {PROXY_UID} -j RETURN\n\
         -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n\
         -A ISTIO_OUTPUT -o lo -j RETURN\n\
         -A ISTIO_OUTPUT -j ISTIO_REDIRECT\n\
         -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n\
         COMMIT\n"
    ));
    r
}

fn hosts_dir(ns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(ns)
}

/// Creates the bridge and one namespace per `(namespace, address)`, with its veth pair, routes,
/// iptables rules and hosts file. `record` is called after each step with what exists, so that a
/// failure part-way leaves a record [`teardown`] can undo.
pub fn setup(
    workloads: &[(String, Ipv4Addr)],
    hosts: &str,
    mut record: impl FnMut(&Network),
) -> Result<Network, NetError> {
    if !rustix::process::geteuid().is_root() {
        return Err(NetError::NotRoot);
    }
    if run(&["ip", "link", "show", BRIDGE], None).is_ok() {
        return Err(NetError::Busy);
    }
    let mut net = Network::default();
    let result = (|| {
        run(&["ip", "link", "add", BRIDGE, "type", "bridge"], None)?;
        net.bridge = Some(BRIDGE.to_string());
        record(&net);
        run(
            &[
                "ip",
                "addr",
                "add",
                &format!("{BRIDGE_IP}/24"),
                "dev",
                BRIDGE,
            ],
            None,
        )?;
        run(&["ip", "link", "set", BRIDGE, "up"], None)?;
        for (i, (ns, ip)) in workloads.iter().enumerate() {
            run(&["ip", "netns", "add", ns], None)?;
            net.namespaces.push(ns.clone());
            record(&net);
            let veth = format!("weftv{}", i + 1);
            run(
                &[
                    "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
                None,
            )?;
            run(&["ip", "link", "set", &veth, "master", BRIDGE, "up"], None)?;
            run(
                &[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    "eth0",
                ],
                None,
            )?;
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"], None)?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"], None)?;
            run(
                &[
                    "ip",
                    "-n",
                    ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &BRIDGE_IP.to_string(),
                ],
                None,
            )?;
            let dir = hosts_dir(ns);
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join("hosts"), hosts))
                .map_err(|e| NetError::Command {
                    command: format!("write {}/hosts", dir.display()),
                    message: e.to_string(),
                })?;
            run(
                &["ip", "netns", "exec", ns, "iptables-restore"],
                Some(&iptables_rules()),
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(net),
        Err(e) => {
            teardown(&net);
            Err(e)
        }
    }
}

/// Removes the namespaces (with their veth pairs and iptables rules), hosts files and bridge.
/// Errors are ignored: what is already gone stays gone.
pub fn teardown(net: &Network) {
    for ns in &net.namespaces {
        let _ = run(&["ip", "netns", "del", ns], None);
        let _ = std::fs::remove_dir_all(hosts_dir(ns));
    }
    if let Some(b) = &net.bridge {
        let _ = run(&["ip", "link", "del", b], None);
    }
}

/// The command line that runs `program args` in namespace `ns`, as `uid` when given.
pub fn wrap(ns: &str, uid: Option<u32>, program: &str, args: &[String]) -> Vec<String> {
    let mut out = vec![
        "ip".to_string(),
        "netns".into(),
        "exec".into(),
        ns.to_string(),
    ];
    if let Some(uid) = uid {
        out.extend([
            "setpriv".to_string(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]);
    }
    out.push(program.to_string());
    out.extend(args.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_exclude_the_proxy_and_redirect_the_rest() {
        let r = iptables_rules();
        assert!(r.contains("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"));
        assert!(r.contains("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"));
        assert!(r.contains("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001"));
        assert!(r.contains("--dport 15000 -j RETURN"));
        assert!(r.ends_with("COMMIT\n"));
    }

    #[test]
    fn wrapped_commands() {
        assert_eq!(
            wrap(
                "weft-a",
                Some(1337),
                "/x/weft-proxy",
                &["-c".into(), "b".into()]
            )
            .join(" "),
            "ip netns exec weft-a setpriv --reuid=1337 --regid=1337 --clear-groups /x/weft-proxy -c b"
        );
        assert_eq!(
            wrap("weft-a", None, "app", &[]).join(" "),
            "ip netns exec weft-a app"
        );
    }
}

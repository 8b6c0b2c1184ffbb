//! Hosts for multi-host tests, made of Linux network namespaces: each host is a
//! namespace with one `eth0` (a veth pair) into a bridge, which lives in a namespace
//! of its own, so nothing is added to the machine's own network. Names carry the
//! test process's id (`rv{pid}-{host}`), so that concurrent runs do not meet, and
//! everything is deleted when the [`Lab`] is dropped, on success, failure or panic.
//! Namespaces left by a run that was killed outright are deleted by the next run.
//!
//! Processes run inside a host with `ip netns exec` ([`Lab::prefix`]); a thread of
//! the test moves itself into one with [`Lab::enter`] (sockets it makes afterwards
//! live there).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

/// A set of hosts on one bridge.
pub struct Lab {
    tag: String,
    /// Namespaces created, in order (deleted in reverse).
    namespaces: Vec<String>,
    hosts: Vec<(String, Ipv4Addr)>,
}

impl Lab {
    /// Creates `hosts` (name, address in a /24) joined by a bridge, or says why not
    /// (typically: not root, or no `ip`).
    pub fn create(hosts: &[(&str, Ipv4Addr)]) -> Result<Lab, String> {
        delete_stale();
        let mut lab = Lab {
            tag: format!("rv{}", std::process::id()),
            namespaces: Vec::new(),
            hosts: Vec::new(),
        };
        // On an error below, dropping `lab` deletes what was made.
        let bridge = lab.add_namespace("bridge")?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        for (i, (name, addr)) in hosts.iter().enumerate() {
            let ns = lab.add_namespace(name)?;
            let port = format!("p{i}");
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &bridge,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &bridge, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &bridge, "link", "set", &port, "up"])?;
            lab.hosts.push(((*name).to_owned(), *addr));
        }
        Ok(lab)
    }

    /// The namespace of `host`.
    pub fn namespace(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// The address of `host`.
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        self.hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// The command prefix that runs a program on `host`.
    pub fn prefix(&self, host: &str) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace(host),
        ]
    }

    /// Takes `host`'s link down: its peers hear nothing more from it, not even a
    /// reset (a cut cable, a dead switch port).
    pub fn cut(&self, host: &str) -> Result<(), String> {
        ip(&["-n", &self.namespace(host), "link", "set", "eth0", "down"])
    }

    /// Moves the calling thread into `host`'s network namespace.
    pub fn enter(&self, host: &str) -> Result<(), String> {
        enter(&self.namespace(host))
    }

    fn add_namespace(&mut self, host: &str) -> Result<String, String> {
        let ns = self.namespace(host);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and so the pair.
        // (Processes still inside would keep it alive: the test stops them first.)
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("!!! could not delete network namespace {ns}: {e}");
            }
        }
    }
}

/// Moves the calling thread into the network namespace `name` (`ip netns` names).
pub fn enter(name: &str) -> Result<(), String> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("setns {path}: {e}"))
}

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes `rv{pid}-…` namespaces whose process no longer exists (a run killed
/// before its clean-up).
fn delete_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("rv")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "delete", name]);
        }
    }
}

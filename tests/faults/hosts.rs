//! Hosts that fail under a job: an sshd of its own on loopback (killed with its sessions
//! as a crashing host would be), and an sshd in a network namespace behind a veth pair
//! whose link the test sets down (the host's network vanishes, nothing answers, nothing
//! resets). Both use the fleet's keys, so they are ordinary ssh hosts to shipwatch.

use std::process::{Child, Command};
use std::time::Duration;

use crate::e2e_support::parent_of;
use crate::fleet::Fleet;
use crate::support::{free_port, process_gone, wait_until};

/// An sshd of its own on a loopback port.
pub struct LoopbackHost {
    pub port: u16,
    daemon: Child,
}

impl LoopbackHost {
    pub fn start(fleet: &Fleet, name: &str) -> LoopbackHost {
        let port = free_port();
        let daemon = fleet
            .extra_sshd(name, "127.0.0.1", port, &[])
            .unwrap_or_else(|e| panic!("sshd for {name}: {e}"));
        wait_until(
            &format!("{name}'s sshd listening"),
            Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        LoopbackHost { port, daemon }
    }

    /// The host dies: SIGKILL to its sshd and every process under it (sessions, script).
    pub fn crash(&mut self) {
        kill_tree(self.daemon.id() as i32);
        let _ = self.daemon.wait();
    }
}

impl Drop for LoopbackHost {
    fn drop(&mut self) {
        self.crash();
    }
}

/// SIGKILLs `root` and all its descendants, children first found from /proc.
pub fn kill_tree(root: i32) {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (pid, _) in crate::e2e_support::processes_with("") {
            if parent_of(pid) == Some(parent) && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        i += 1;
    }
    for pid in tree {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// An sshd in its own network namespace, reached over a veth pair.
pub struct NetnsHost {
    pub name: String,
    /// The namespace side's address, where its sshd listens.
    pub address: String,
    pub port: u16,
    veth: String,
    daemon: Option<Child>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e} (install iproute2)"));
    assert!(status.success(), "ip {args:?} failed: {status}");
}

impl NetnsHost {
    /// `tag` keeps the namespace, link and /30 subnet apart from other test processes'.
    pub fn start(fleet: &Fleet, tag: u32) -> NetnsHost {
        let unique = (std::process::id() * 8 + tag) % 16_000;
        let name = format!("swf{unique}");
        let veth = format!("swv{unique}");
        let peer = format!("swp{unique}");
        // 10.213.0.0/16 cut in /30s: .1 this side, .2 the namespace's.
        let base = unique * 4;
        let (hi, lo) = (base / 256, base % 256);
        let here = format!("10.213.{hi}.{}", lo + 1);
        let there = format!("10.213.{hi}.{}", lo + 2);
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &veth]).status();
        ip(&["netns", "add", &name]);
        let mut host = NetnsHost {
            name: name.clone(),
            address: there.clone(),
            port: 2222,
            veth: veth.clone(),
            daemon: None,
        };
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{here}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{there}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &name, "link", "set", &peer, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let daemon = fleet
            .extra_sshd(
                &format!("netns-{unique}"),
                &there,
                host.port,
                &["ip", "netns", "exec", &name],
            )
            .unwrap_or_else(|e| panic!("sshd in {name}: {e}"));
        host.daemon = Some(daemon);
        let addr: std::net::SocketAddr = format!("{there}:{}", host.port).parse().expect("address");
        wait_until(
            &format!("sshd in {name} listening"),
            Duration::from_secs(30),
            || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok(),
        );
        host
    }

    /// The host's network vanishes: no packet in or out, no reset.
    pub fn link_down(&self) {
        ip(&["link", "set", &self.veth, "down"]);
    }

    pub fn link_up(&self) {
        ip(&["link", "set", &self.veth, "up"]);
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let pid = daemon.id() as i32;
            kill_tree(pid);
            let _ = daemon.wait();
            wait_until("the namespace's sshd gone", Duration::from_secs(10), || {
                process_gone(pid)
            });
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

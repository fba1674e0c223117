//! Errors say each thing once (issue 8): the real binary's message for a gateway that
//! cannot listen names what it tried and the OS's reason, and the reason only once.

mod support;

use std::process::{Command, Stdio};

use support::{BIN, DEADLINE, Setup, wait_exit};

#[test]
fn a_gateway_on_a_port_in_use_says_address_already_in_use_once() {
    let setup = Setup::new("");
    // Hold the port the config names, so the gateway's bind fails.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", setup.port)).expect("take the port");
    let stderr = std::fs::File::create(setup.dir.path().join("gateway.log")).expect("log file");
    let mut gateway = Command::new(BIN)
        .arg("gateway")
        .arg("-c")
        .arg(setup.config_path())
        .current_dir(setup.dir.path())
        .env("SHIPWATCH_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn shipwatch gateway");
    let status = wait_exit(&mut gateway, DEADLINE);
    let said = std::fs::read_to_string(setup.dir.path().join("gateway.log")).unwrap_or_default();
    assert!(!status.success(), "the gateway cannot serve: {said}");
    assert!(
        said.contains(&format!("cannot listen on 127.0.0.1:{}", setup.port)),
        "says what it tried: {said}"
    );
    assert_eq!(
        said.matches("Address already in use").count(),
        1,
        "the OS's reason exactly once: {said}"
    );
}

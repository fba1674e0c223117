//! What the runner's test binaries share: the sshd fleet (the sshtest crate), and finding
//! processes left behind.

#![allow(dead_code)] // not every test binary uses every helper

use std::time::{Duration, Instant};

pub use shipwatch_sshtest as fleet;

/// Processes whose command line contains `needle`, other than ourselves.
pub fn processes_with(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
                continue;
            }
            if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(needle) {
                    found.push(format!("{name}: {cmd}"));
                }
            }
        }
    }
    found
}

pub async fn assert_no_survivors(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the job survived: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

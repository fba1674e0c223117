//! The fault suite (DESIGN §9, issue 12): each scenario breaks one thing an ops box can
//! break while a 20-host rolling deploy runs over the real sshd fleet and 100 WebSocket
//! watchers check every event, and prints one row of
//! `scenario | events expected | delivered | lost | duplicated | final states ok |
//! leaked processes | leaked fds`.
//!
//! CI-sized by default; `SHIPWATCH_FAULTS=full` runs the sizes (bench/faults.sh
//! prints the whole table). Scenarios run one at a time ([`harness::serial`]).

#[path = "../e2e_support/mod.rs"]
mod e2e_support;
mod harness;
mod hosts;
mod scenarios;
mod soak;
#[path = "../support/mod.rs"]
mod support;

use shipwatch_sshtest as fleet;

//! `[supervisor]`: the process table's counts and timings.

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    pub(super) fn supervisor(&mut self, raw: RawSupervisor) -> Supervisor {
        let runners = self.int_in(
            "supervisor.runners",
            raw.runners.as_ref(),
            4,
            0,
            256,
            "runner processes: 0 to 256",
        ) as u32;
        let start_retries = self.int_in(
            "supervisor.start_retries",
            raw.start_retries.as_ref(),
            5,
            1,
            u32::MAX as i64,
            "1 or more failed starts",
        ) as u32;
        Supervisor {
            runners,
            start_secs: self.secs("supervisor.start_secs", raw.start_secs.as_ref(), 1.0, true),
            start_retries,
            backoff_max: self.secs(
                "supervisor.backoff_max_secs",
                raw.backoff_max_secs.as_ref(),
                30.0,
                false,
            ),
            stop_timeout: self.secs(
                "supervisor.stop_timeout_secs",
                raw.stop_timeout_secs.as_ref(),
                10.0,
                false,
            ),
            drain_timeout: self.secs(
                "supervisor.drain_timeout_secs",
                raw.drain_timeout_secs.as_ref(),
                3600.0,
                false,
            ),
            watch_config: raw.watch_config.is_none_or(|v| *v.get_ref()),
        }
    }
}

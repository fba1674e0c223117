//! When a commit fails (a full disk, a database gone past the retries): every op of the
//! group hears the error, and the jobs it carried are failed so nobody waits on them;
//! a failure that cannot be recorded either is shown to readers and retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use shipwatch_protocol::{EventBody, JobId, JobState, Report, Timestamp};
use tokio::sync::oneshot;

use super::op::{Op, Outcome};
use super::{Engine, Group, Writer};
use crate::store::{StoreError, show_failure};

/// A job's failure the store could not record yet (the disk is still full). Readers show
/// it, so the job does not look running while nothing more of it can be stored.
#[derive(Debug, Clone)]
pub(in crate::store) struct Unrecorded {
    pub reason: String,
    /// When the failure happened; the recorded `ended_at` is when room returned.
    pub at: Timestamp,
}

/// The writer's unrecorded failures as readers see them.
pub(in crate::store) type UnrecordedJobs = Arc<std::sync::Mutex<HashMap<JobId, Unrecorded>>>;

impl<E: Engine> Writer<E> {
    /// Tries again to store the failure of jobs whose failure could not be stored.
    pub(super) fn record_failures(&mut self) {
        self.last_retry = Instant::now();
        if self.unrecorded.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.unrecorded);
        self.marking_failed = true;
        for (job, failure) in jobs {
            self.fail_job(job, failure.reason);
            // Still full: it is still the failure of then.
            if let Some(again) = self.unrecorded.get_mut(&job) {
                again.at = failure.at;
            }
        }
        self.marking_failed = false;
        self.show_unrecorded();
    }

    /// Commits the job's failure in a group of its own.
    fn fail_job(&mut self, job: JobId, reason: String) {
        let (reply, _rx) = oneshot::channel();
        let body = EventBody::Job {
            state: JobState::Failed,
            reason: Some(reason),
        };
        self.group(vec![Op::Gateway { job, body, reply }]);
    }

    fn show_unrecorded(&self) {
        if let Ok(mut visible) = self.visible.lock() {
            visible.clone_from(&self.unrecorded);
        }
    }

    /// Nothing of the group is stored: answer every op with the error, then try to fail
    /// each job that lost events so nobody waits on it forever.
    pub(super) fn after_failure(&mut self, g: Group, ops: Vec<Op>, error: StoreError) {
        tracing::error!(error = %Report(&error), "store commit failed; failing the jobs it carried");
        self.jobs.clear();
        self.engine.forget();
        let reason = format!(
            "the gateway could not store its events: {}",
            self.engine.words(&error)
        );
        // Every job of the group, also those whose ops the failure left unprocessed.
        let mut touched: Vec<JobId> = ops.iter().filter_map(Op::job).collect();
        touched.sort_unstable();
        touched.dedup();
        if self.marking_failed {
            // Recording the failure failed too (the disk is still full): store nothing
            // more for these jobs and retry recording it later.
            let at = Timestamp::now();
            for job in touched {
                let reason = reason.clone();
                self.unrecorded.insert(job, Unrecorded { reason, at });
            }
        } else {
            // Marking them failed is a commit too (a small one, which may still fit). It
            // comes before the answers, so whoever got the error finds the job failed.
            self.marking_failed = true;
            for &job in &touched {
                self.fail_job(job, reason.clone());
            }
            self.marking_failed = false;
            self.show_unrecorded();
            // Watchers of the job list learn of a failure the store could not record.
            for job in touched {
                let Some(failure) = self.unrecorded.get(&job).cloned() else {
                    continue;
                };
                if let Ok(Some(mut view)) = self.engine.read_job(job, false) {
                    show_failure(&mut view, &failure);
                    self.publish.job_changed(&view);
                }
            }
        }
        // An op refused inside the group hears its own refusal; every other the error.
        let mut outcomes = g.outcomes.into_iter();
        for op in ops {
            let outcome = match outcomes.next() {
                Some(Outcome::Refused(e)) => Ok(Outcome::Refused(e)),
                _ => Err(self.engine.repeat(&error)),
            };
            op.answer(outcome, |_| Err(StoreError::WriterGone));
        }
    }
}

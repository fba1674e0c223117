//! An event as a row of `events`: columns only, never its JSON. A line costs its text
//! and about 25 bytes (job, seq, ts, a kind code, a host number, the record header);
//! repeating what the columns say in a JSON copy cost ~195 bytes per 29-byte line
//! (issue 13). The JSON watchers receive is written from the columns when the row is
//! read, by the serialiser that wrote it at commit, so it is the same bytes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};
use shipwatch_protocol::{BodyRef, EventBody, JobId, Stream, Timestamp, write_event_json};

use crate::model::{CommittedEvent, RowRef};
use crate::store::StoreError;

/// `events.kind`: a line on stdout or stderr (0 and 1 take no byte in a SQLite record),
/// a host's or the job's state change, a notice.
const KIND_STDOUT: i64 = 0;
const KIND_STDERR: i64 = 1;
const KIND_HOST: i64 = 2;
const KIND_JOB: i64 = 3;
const KIND_NOTICE: i64 = 4;

/// The columns of an event's row besides job, seq, ts and host.
pub(super) struct Columns<'a> {
    pub kind: i64,
    pub text: Option<&'a str>,
    pub state: Option<&'static str>,
    pub exit_code: Option<i32>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(body: &'a EventBody) -> Columns<'a> {
        let (kind, text, state, exit_code) = match body {
            EventBody::Line { stream, text, .. } => {
                let kind = match stream {
                    Stream::Stdout => KIND_STDOUT,
                    Stream::Stderr => KIND_STDERR,
                };
                (kind, Some(text.as_str()), None, None)
            }
            EventBody::Host {
                state, exit_code, ..
            } => (KIND_HOST, None, Some(state.as_str()), *exit_code),
            EventBody::Job { state, reason } => {
                (KIND_JOB, reason.as_deref(), Some(state.as_str()), None)
            }
            EventBody::Notice { text } => (KIND_NOTICE, Some(text.as_str()), None, None),
        };
        Columns {
            kind,
            text,
            state,
            exit_code,
        }
    }
}

/// The kind name and stream a `kind` code stands for.
fn kind_of(code: i64) -> Result<(&'static str, Option<Stream>), StoreError> {
    Ok(match code {
        KIND_STDOUT => ("line", Some(Stream::Stdout)),
        KIND_STDERR => ("line", Some(Stream::Stderr)),
        KIND_HOST => ("host", None),
        KIND_JOB => ("job", None),
        KIND_NOTICE => ("notice", None),
        other => return Err(StoreError::Corrupt(format!("event kind {other}"))),
    })
}

/// The select list [`Decoder::event`] reads, in its order.
pub(super) const SELECT: &str = "seq, ts, kind, host, text, state, exit_code";

/// What filters look at, read from a row before its JSON is made.
pub(super) struct Head {
    pub kind: &'static str,
    pub host: Option<Arc<str>>,
    pub stream: Option<Stream>,
}

/// Turns rows of one job back into events; remembers host names between rows, so the
/// lines of one host share one name.
pub(super) struct Decoder<'c> {
    conn: &'c Connection,
    job: JobId,
    hosts: HashMap<i64, Arc<str>>,
    json: Vec<u8>,
}

impl<'c> Decoder<'c> {
    pub(super) fn new(conn: &'c Connection, job: JobId) -> Self {
        Decoder {
            conn,
            job,
            hosts: HashMap::new(),
            json: Vec::with_capacity(256),
        }
    }

    /// The row's kind, host and stream.
    pub(super) fn head(&mut self, row: &rusqlite::Row<'_>) -> Result<Head, StoreError> {
        let (kind, stream) = kind_of(row.get(2)?)?;
        let host = match row.get::<_, Option<i64>>(3)? {
            Some(id) => Some(self.host(id)?),
            None => None,
        };
        Ok(Head { kind, host, stream })
    }

    /// The event of `row` (selected with [`SELECT`]) with the `head` read from it.
    pub(super) fn event(
        &mut self,
        row: &rusqlite::Row<'_>,
        Head { kind, host, stream }: Head,
    ) -> Result<CommittedEvent, StoreError> {
        let seq = row.get::<_, i64>(0)? as u64;
        let ts = Timestamp(row.get(1)?);
        let text = row.get_ref(4)?.as_str_or_null()?;
        let state = row.get_ref(5)?.as_str_or_null()?;
        let missing = |what: &str| StoreError::Corrupt(format!("{kind} event {seq} has no {what}"));
        let host_name = host.as_deref();
        let body = match (kind, stream) {
            ("line", Some(stream)) => BodyRef::Line {
                host: host_name.ok_or_else(|| missing("host"))?,
                stream,
                text: text.ok_or_else(|| missing("text"))?,
            },
            ("host", _) => BodyRef::Host {
                host: host_name.ok_or_else(|| missing("host"))?,
                state: state
                    .ok_or_else(|| missing("state"))?
                    .parse()
                    .map_err(crate::store::corrupt)?,
                exit_code: row.get(6)?,
            },
            ("job", _) => BodyRef::Job {
                state: state
                    .ok_or_else(|| missing("state"))?
                    .parse()
                    .map_err(crate::store::corrupt)?,
                reason: text,
            },
            _ => BodyRef::Notice {
                text: text.ok_or_else(|| missing("text"))?,
            },
        };
        self.json.clear();
        write_event_json(&mut self.json, self.job, seq, ts, body);
        Ok(CommittedEvent {
            seq,
            kind,
            host,
            stream,
            json: Bytes::copy_from_slice(&self.json),
        })
    }

    /// Hands the row (selected with [`SELECT`]) to `each`: a line as its columns,
    /// borrowed from the row, any other event as its JSON.
    pub(super) fn each_row(
        &mut self,
        row: &rusqlite::Row<'_>,
        head: Head,
        each: &mut impl FnMut(RowRef<'_>),
    ) -> Result<(), StoreError> {
        let Head { kind, host, stream } = head;
        match (stream, host) {
            (Some(stream), Some(host)) => {
                let seq = row.get::<_, i64>(0)? as u64;
                let Some(text) = row.get_ref(4)?.as_str_or_null()? else {
                    return Err(StoreError::Corrupt(format!("line event {seq} has no text")));
                };
                each(RowRef::Line {
                    seq,
                    ts: Timestamp(row.get(1)?),
                    host: &host,
                    stream,
                    text,
                });
            }
            (stream, host) => {
                let event = self.event(row, Head { kind, host, stream })?;
                each(RowRef::Event(&event));
            }
        }
        Ok(())
    }

    fn host(&mut self, id: i64) -> Result<Arc<str>, StoreError> {
        if let Some(name) = self.hosts.get(&id) {
            return Ok(name.clone());
        }
        let name: Option<String> = self
            .conn
            .prepare_cached("SELECT name FROM host_names WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let name: Arc<str> = name
            .ok_or_else(|| StoreError::Corrupt(format!("no host name {id}")))?
            .into();
        self.hosts.insert(id, name.clone());
        Ok(name)
    }
}

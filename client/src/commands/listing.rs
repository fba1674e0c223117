//! Read-only views: `jobs` (paged, filtered), `show JOB` and `tasks`, as tables or JSON.

use std::io::Write;

use shipwatch_protocol::JobId;
use shipwatch_protocol::api::{JobList, TaskList};

use super::watch::took;
use super::{JobsQuery, explain, job};
use crate::{ApiClient, ClientError, Exit};

pub(super) async fn jobs(api: &ApiClient, query: &JobsQuery) -> Result<Exit, ClientError> {
    const PAGE: u32 = 200;
    const MAX_PAGES: usize = 25;
    let limit = query.limit.max(1) as usize;
    let mut found = Vec::new();
    let mut before: Option<JobId> = None;
    for _ in 0..MAX_PAGES {
        let page_size = if query.task.is_none() && query.state.is_none() {
            (limit - found.len()).min(PAGE as usize) as u32
        } else {
            PAGE
        };
        let mut path = format!("/api/jobs?limit={page_size}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        let page: JobList = match api.get(&path).await? {
            Ok(page) => page,
            Err(refusal) => return Err(explain(api, refusal, "listing jobs", "the viewer role")),
        };
        let last_page = page.jobs.len() < page_size as usize;
        before = page.jobs.last().map(|j| j.id);
        found.extend(page.jobs.into_iter().filter(|j| {
            query.task.as_ref().is_none_or(|t| &j.task == t)
                && query.state.is_none_or(|s| j.state == s)
        }));
        if found.len() >= limit || last_page || before.is_none() {
            break;
        }
    }
    found.truncate(limit);
    let mut out = std::io::stdout().lock();
    if query.json {
        let text = serde_json::to_string_pretty(&JobList { jobs: found }).map_err(|source| {
            ClientError::Decode {
                url: api.server().url("/api/jobs"),
                source,
            }
        })?;
        writeln!(out, "{text}").map_err(ClientError::Output)?;
        return Ok(Exit::Succeeded);
    }
    let mut table = vec![["ID", "TASK", "STATE", "HOSTS OK", "BY", "CREATED"].map(String::from)];
    for j in &found {
        let c = &j.counts;
        let total = c.total();
        table.push([
            j.id.to_string(),
            j.task.clone(),
            j.state.to_string(),
            format!("{}/{total}", c.ok),
            j.started_by.clone(),
            j.created_at.clone(),
        ]);
    }
    write_table(&mut out, &table).map_err(ClientError::Output)?;
    Ok(Exit::Succeeded)
}

pub(super) async fn show(api: &ApiClient, id: JobId, json: bool) -> Result<Exit, ClientError> {
    let mut out = std::io::stdout().lock();
    if json {
        let value: serde_json::Value = match api.get(&format!("/api/jobs/{id}")).await? {
            Ok(v) => v,
            Err(refusal) => return Err(explain(api, refusal, "reading a job", "the viewer role")),
        };
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        writeln!(out, "{text}").map_err(ClientError::Output)?;
        return Ok(Exit::Succeeded);
    }
    let j = job(api, id).await?;
    let write = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
        let reason = j
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        writeln!(out, "job {} · {} · {}{reason}", j.id, j.task, j.state)?;
        let took = took(&j).map(|t| format!(", ran {t}")).unwrap_or_default();
        writeln!(out, "started by {} at {}{took}", j.started_by, j.created_at)?;
        if !j.params.is_empty() {
            let params: Vec<String> = j.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "params: {}", params.join(" "))?;
        }
        writeln!(out, "page: {}", api.server().job_page(j.id))?;
        writeln!(out)?;
        let mut table =
            vec![["HOST", "STATE", "EXIT", "WAVE", "STARTED", "ENDED"].map(String::from)];
        for h in j.hosts.iter().flatten() {
            table.push([
                h.host.clone(),
                h.state.to_string(),
                h.exit_code.map_or("-".into(), |c| c.to_string()),
                h.wave.to_string(),
                h.started_at.clone().unwrap_or_else(|| "-".into()),
                h.ended_at.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        write_table(out, &table)
    };
    write(&mut out).map_err(ClientError::Output)?;
    Ok(Exit::Succeeded)
}

pub(super) async fn tasks(api: &ApiClient, json: bool) -> Result<Exit, ClientError> {
    let list: TaskList = match api.get("/api/tasks").await? {
        Ok(list) => list,
        Err(refusal) => return Err(explain(api, refusal, "listing tasks", "the viewer role")),
    };
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
        if json {
            let text = serde_json::to_string_pretty(&list).unwrap_or_default();
            return writeln!(out, "{text}");
        }
        if list.tasks.is_empty() {
            return writeln!(out, "this server offers no tasks");
        }
        for t in &list.tasks {
            writeln!(
                out,
                "{}  {} ({} hosts)",
                t.name,
                t.description,
                t.hosts.len()
            )?;
            for p in &t.params {
                let mut about = vec![if p.required { "required" } else { "optional" }.to_string()];
                if let Some(pattern) = &p.pattern {
                    about.push(format!("pattern {pattern}"));
                }
                if !p.default.is_empty() {
                    about.push(format!("default {}", p.default));
                }
                writeln!(out, "    -p {}=…  {}", p.name, about.join(", "))?;
            }
        }
        Ok(())
    };
    write(&mut out).map_err(ClientError::Output)?;
    Ok(Exit::Succeeded)
}

/// Columns padded to their widest cell.
fn write_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

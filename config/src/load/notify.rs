//! `[[notify]]`: webhooks the gateway POSTs to when a job ends (http or https; https is
//! verified against the OS's trust store, see gateway/src/notify.rs).

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    pub(super) fn notify(&mut self, raw: Vec<S<RawNotify>>, tasks: &[Task]) -> Vec<Notify> {
        let mut hooks = Vec::new();
        for (i, hook) in raw.into_iter().enumerate() {
            let hook = hook.into_inner();
            let key = format!("notify[{i}]");
            let url = hook.url.get_ref().trim().to_string();
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .map(|r| r.split('/').next().unwrap_or(""));
            match host {
                Some(host) if !host.is_empty() && !url.contains(char::is_whitespace) => {}
                _ => self.bad_value(
                    &format!("{key}.url"),
                    hook.url.span(),
                    r#"expected an http:// or https:// URL like "https://hooks.internal/shipwatch""#,
                ),
            }
            let on = match &hook.on {
                None => vec![JobEnd::Failed, JobEnd::Lost],
                Some(names) => {
                    let mut on = Vec::new();
                    for name in names {
                        match JobEnd::ALL.iter().find(|e| e.as_str() == name.get_ref()) {
                            Some(end) if !on.contains(end) => on.push(*end),
                            Some(_) => {}
                            None => self.bad_value(
                                &format!("{key}.on"),
                                name.span(),
                                "expected succeeded, failed, cancelled or lost",
                            ),
                        }
                    }
                    on
                }
            };
            let format = match hook
                .format
                .as_ref()
                .map(|f| (f.get_ref().as_str(), f.span()))
            {
                None | Some(("json", _)) => NotifyFormat::Json,
                Some(("slack", _)) => NotifyFormat::Slack,
                Some((_, span)) => {
                    self.bad_value(
                        &format!("{key}.format"),
                        span,
                        r#"expected "json" or "slack""#,
                    );
                    NotifyFormat::Json
                }
            };
            let mut names = Vec::new();
            for task in hook.tasks.iter().flatten() {
                if tasks.iter().any(|t| &t.name == task.get_ref()) {
                    names.push(task.get_ref().clone());
                } else {
                    let message = format!("{key}.tasks: no task named {:?}", task.get_ref());
                    self.error(task.span(), message);
                }
            }
            hooks.push(Notify {
                url,
                on,
                format,
                tasks: names,
            });
        }
        hooks
    }
}

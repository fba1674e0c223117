//! `[hosts]`: groups of hosts, each host written `name` or `name=address[:port]`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    /// Groups with their hosts, and every host by name with where it was first defined.
    #[allow(clippy::type_complexity)]
    pub(super) fn host_groups(
        &mut self,
        raw: BTreeMap<S<String>, S<Vec<S<String>>>>,
    ) -> (BTreeMap<String, Vec<Host>>, BTreeMap<String, Host>) {
        let mut groups = BTreeMap::new();
        let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
        // Walk in file order so "defined twice" points at the second definition.
        let mut entries: Vec<_> = raw.into_iter().collect();
        entries.sort_by_key(|(group, _)| group.span().start);
        for (group, specs) in entries {
            let group_name = group.get_ref().clone();
            if !valid_name(&group_name) {
                let message = format!(
                    "hosts.{group_name}: a group name is letters, digits, '.', '_' and '-'"
                );
                self.error(group.span(), message);
            }
            let mut members: Vec<Host> = Vec::new();
            for (i, spec) in specs.into_inner().into_iter().enumerate() {
                let key = format!("hosts.{group_name}[{i}]");
                let target = match parse_host(spec.get_ref()) {
                    Ok(target) => target,
                    Err(why) => {
                        self.bad_value(&key, spec.span(), &why);
                        continue;
                    }
                };
                match hosts.get(&target.name) {
                    Some(known) if known != &target => {
                        let message = format!(
                            "{key} = {}: host {:?} is already defined as {:?}",
                            self.written(&spec.span()),
                            target.name,
                            display_host(known),
                        );
                        self.error(spec.span(), message);
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        hosts.insert(target.name.clone(), target.clone());
                    }
                }
                if !members.iter().any(|m| m.name == target.name) {
                    members.push(target);
                }
            }
            groups.insert(group_name, members);
        }
        (groups, hosts)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn display_host(host: &Host) -> String {
    match (&host.address, host.port) {
        (None, None) => host.name.clone(),
        (Some(a), None) => format!("{}={a}", host.name),
        (address, Some(port)) => {
            let address = address.as_deref().unwrap_or(&host.name);
            if address.contains(':') {
                format!("{}=[{address}]:{port}", host.name)
            } else {
                format!("{}={address}:{port}", host.name)
            }
        }
    }
}

/// `name`, `name=address`, `name=address:port`, `name=[v6addr]:port`, `name=v6addr`.
fn parse_host(spec: &str) -> Result<Host, String> {
    let (name, address) = match spec.split_once('=') {
        None => (spec, None),
        Some((name, address)) => (name, Some(address)),
    };
    if !valid_name(name) {
        return Err("a host name is letters, digits, '.', '_' and '-' (expected \"name\" or \"name=address[:port]\")".into());
    }
    let Some(address) = address else {
        return Ok(Host {
            name: name.to_string(),
            address: None,
            port: None,
        });
    };
    let parse_port = |port: &str| -> Result<u16, String> {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("port {port:?} is not 1 to 65535")),
        }
    };
    let (address, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err("an IPv6 address in brackets needs its ']'".into());
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None => return Err("expected ':port' after ']'".into()),
            },
        };
        (v6.to_string(), port)
    } else if address.matches(':').count() > 1 {
        if address.parse::<IpAddr>().is_err() {
            return Err(format!(
                "{address:?} is not an address; write IPv6 with a port as [addr]:port"
            ));
        }
        (address.to_string(), None)
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(parse_port(port)?)),
            None => (address.to_string(), None),
        }
    };
    if address.is_empty()
        || address.starts_with('-')
        || address.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(format!("{address:?} is not a host address"));
    }
    Ok(Host {
        name: name.to_string(),
        address: Some(address),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: Option<&str>, port: Option<u16>) -> Host {
        Host {
            name: name.into(),
            address: address.map(Into::into),
            port,
        }
    }

    #[test]
    fn host_specs_in_every_accepted_form() {
        assert_eq!(parse_host("web-01"), Ok(host("web-01", None, None)));
        assert_eq!(
            parse_host("w=10.0.0.1"),
            Ok(host("w", Some("10.0.0.1"), None))
        );
        assert_eq!(
            parse_host("w=h.example:2222"),
            Ok(host("w", Some("h.example"), Some(2222)))
        );
        assert_eq!(
            parse_host("w=[2001:db8::1]:22"),
            Ok(host("w", Some("2001:db8::1"), Some(22)))
        );
        assert_eq!(parse_host("w=[::1]"), Ok(host("w", Some("::1"), None)));
        assert_eq!(
            parse_host("w=fe80::1"),
            Ok(host("w", Some("fe80::1"), None))
        );
    }

    #[test]
    fn host_specs_refused() {
        for spec in [
            "",
            "=10.0.0.1",
            "w=",
            "w=10.0.0.1:0",
            "w=10.0.0.1:65536",
            "w=10.0.0.1:x",
            "w=[::1",
            "w=[::1]22",
            "w=[nope]:22",
            "w=a::b::c",
            "w=-oProxyCommand=x",
            "w=user@host",
            "w=a b",
            "-w",
            "w/1",
        ] {
            assert!(parse_host(spec).is_err(), "{spec:?} should be refused");
        }
    }
}

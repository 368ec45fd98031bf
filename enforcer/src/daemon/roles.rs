//! Who may ask what on the API socket (docs/daemon.md, "Who may ask what"). A caller's roles
//! come from the peer alone (kernel-recorded credentials and the kernel's process table at
//! request time), never from what the request says.
//!
//! An agent member has that role and no other: an agent running as root is not an admin, an
//! agent whose uid is in `api.group` is not a launcher. Everything else is additive.

use enforcer_common::ProcState;

use crate::api::server::Peer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A process the kernel holds as a member of an agent (process table or doomed table).
    AgentMember,
    /// A member of `api.group`: starts agents (`enforcer run`), reads status.
    Launcher,
    /// A member of `api.auditor_group`: reads the event stream and status.
    Auditor,
    /// uid 0 that is not an agent member, or a member of `api.admin_group`: everything.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            AgentMember => "agent-member",
            Launcher => "launcher",
            Auditor => "auditor",
            Admin => "admin",
        }
    }
}

use Role::*;

/// Each verb and the roles that may call it. The one place this is decided; docs/daemon.md
/// shows the same table. An agent member's `register` is further limited to a sub-agent its
/// chain delegates to (core.rs `register`).
pub const VERBS: &[(&str, &[Role])] = &[
    ("register", &[AgentMember, Launcher, Admin]),
    ("status", &[Launcher, Auditor, Admin]),
    ("grants", &[Launcher, Auditor, Admin]),
    ("subscribe", &[Auditor, Admin]),
    ("grant", &[Admin]),
    ("revoke", &[Admin]),
    ("reload", &[Admin]),
];

/// A verb the table does not list is for admins only.
const DEFAULT_ROLES: &[Role] = &[Admin];

/// The roles that may call `verb`.
pub fn allowed(verb: &str) -> &'static [Role] {
    VERBS
        .iter()
        .find(|(v, _)| *v == verb)
        .map_or(DEFAULT_ROLES, |(_, roles)| roles)
}

/// Group ids of the configured roles (resolved from `api.group`, `api.auditor_group`,
/// `api.admin_group` when the daemon starts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleGroups {
    pub launcher: Option<(String, u32)>,
    pub auditor: Option<(String, u32)>,
    pub admin: Option<(String, u32)>,
}

impl RoleGroups {
    /// Look the configured group names up (`api.group`, `api.auditor_group`,
    /// `api.admin_group`). A group that does not exist is an error: a typo must not silently
    /// leave a role empty.
    pub fn resolve(api: &crate::daemon::config::ApiConfig) -> Result<RoleGroups, String> {
        let lookup =
            |field: &str, name: &Option<String>| -> Result<Option<(String, u32)>, String> {
                let Some(name) = name else { return Ok(None) };
                let group = nix::unistd::Group::from_name(name)
                    .map_err(|e| format!("{field}: looking up group {name:?}: {e}"))?
                    .ok_or_else(|| format!("{field}: group {name:?} does not exist"))?;
                Ok(Some((name.clone(), group.gid.as_raw())))
            };
        Ok(RoleGroups {
            launcher: lookup("api.group", &api.group)?,
            auditor: lookup("api.auditor_group", &api.auditor_group)?,
            admin: lookup("api.admin_group", &api.admin_group)?,
        })
    }
}

/// How the kernel holds an agent member.
#[derive(Clone, Copy, Debug)]
pub struct Membership {
    /// The thread found in the tables (the peer's pid or one of its threads).
    pub tid: u32,
    /// `None`: in the doomed table (a child the process table had no room for).
    pub state: Option<ProcState>,
}

/// The caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub member: Option<Membership>,
    pub roles: Vec<Role>,
}

impl Caller {
    pub fn of(peer: &Peer, member: Option<Membership>, groups: &RoleGroups) -> Caller {
        if member.is_some() {
            return Caller {
                member,
                roles: vec![AgentMember],
            };
        }
        let in_group =
            |g: &Option<(String, u32)>| g.as_ref().is_some_and(|(_, gid)| peer.in_group(*gid));
        let mut roles = Vec::new();
        if in_group(&groups.launcher) {
            roles.push(Launcher);
        }
        if in_group(&groups.auditor) {
            roles.push(Auditor);
        }
        if peer.uid == 0 || in_group(&groups.admin) {
            roles.push(Admin);
        }
        Caller { member, roles }
    }

    /// A caller with no role at all (unidentifiable peers).
    pub fn nobody() -> Caller {
        Caller {
            member: None,
            roles: Vec::new(),
        }
    }

    pub fn may(&self, verb: &str) -> bool {
        allowed(verb).iter().any(|r| self.roles.contains(r))
    }
}

/// "the admin role", "the auditor or admin role".
pub fn needed(verb: &str) -> String {
    let names: Vec<&str> = allowed(verb)
        .iter()
        .filter(|r| **r != AgentMember)
        .map(|r| r.name())
        .collect();
    match names.as_slice() {
        [one] => format!("the {one} role"),
        [rest @ .., last] => format!("the {} or {last} role", rest.join(", ")),
        [] => "a role nobody has".into(),
    }
}

/// What the caller's groups give it, for the refusal message of a caller without the role.
pub fn describe_roles(caller: &Caller, groups: &RoleGroups) -> String {
    if caller.roles.is_empty() {
        let mut configured = vec!["uid 0".to_owned()];
        for (field, group) in [
            ("api.group", &groups.launcher),
            ("api.auditor_group", &groups.auditor),
            ("api.admin_group", &groups.admin),
        ] {
            if let Some((name, gid)) = group {
                configured.push(format!("{field} {name:?} (gid {gid})"));
            }
        }
        format!("has no role (roles come from {})", configured.join(", "))
    } else {
        let names: Vec<&str> = caller.roles.iter().map(|r| r.name()).collect();
        format!("has the role {}", names.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Request;

    fn every_request() -> Vec<Request> {
        vec![
            Request::Register {
                agent: "a".into(),
                pid: 1,
            },
            Request::Status {},
            Request::Subscribe {},
            Request::Reload {},
            Request::Grant {
                agent: "a".into(),
                rule: "file.read /x".into(),
                seconds: 1,
                reason: None,
            },
            Request::Grants {},
            Request::Revoke { id: 1 },
        ]
    }

    #[test]
    fn every_verb_is_in_the_table() {
        for request in every_request() {
            assert!(
                VERBS.iter().any(|(v, _)| *v == request.verb()),
                "{} is not in VERBS",
                request.verb()
            );
        }
        assert_eq!(
            allowed("shutdown"),
            &[Admin],
            "unknown verbs are admin-only"
        );
    }

    #[test]
    fn the_table() {
        let groups = RoleGroups {
            launcher: Some(("enforcer".into(), 100)),
            auditor: Some(("audit".into(), 101)),
            admin: Some(("secadm".into(), 102)),
        };
        let peer = |uid, gid, groups: &[u32]| Peer {
            groups: groups.to_vec(),
            ..Peer::unbound(Some(7), uid, gid)
        };
        let member = Some(Membership {
            tid: 7,
            state: None,
        });
        let cases: [(&str, Caller, &[&str]); 7] = [
            (
                "root",
                Caller::of(&peer(0, 0, &[]), None, &groups),
                &[
                    "register",
                    "status",
                    "grants",
                    "subscribe",
                    "grant",
                    "revoke",
                    "reload",
                ],
            ),
            (
                "admin group",
                Caller::of(&peer(1000, 1000, &[102]), None, &groups),
                &[
                    "register",
                    "status",
                    "grants",
                    "subscribe",
                    "grant",
                    "revoke",
                    "reload",
                ],
            ),
            (
                "launcher",
                Caller::of(&peer(1000, 100, &[]), None, &groups),
                &["register", "status", "grants"],
            ),
            (
                "auditor",
                Caller::of(&peer(1000, 1000, &[101]), None, &groups),
                &["status", "grants", "subscribe"],
            ),
            (
                "nobody",
                Caller::of(&peer(1000, 1000, &[5]), None, &groups),
                &[],
            ),
            (
                "root agent",
                Caller::of(&peer(0, 0, &[102]), member, &groups),
                &["register"],
            ),
            (
                "launcher agent",
                Caller::of(&peer(1000, 100, &[101]), member, &groups),
                &["register"],
            ),
        ];
        for (who, caller, may) in cases {
            for request in every_request() {
                let verb = request.verb();
                assert_eq!(
                    caller.may(verb),
                    may.contains(&verb),
                    "{who} ({:?}) {verb}",
                    caller.roles
                );
            }
            // A verb the table does not know is for admins only.
            assert_eq!(
                caller.may("shutdown"),
                may.contains(&"reload"),
                "{who}: unknown verb"
            );
        }
        assert_eq!(needed("grant"), "the admin role");
        assert_eq!(needed("subscribe"), "the auditor or admin role");
        assert_eq!(needed("status"), "the launcher, auditor or admin role");
    }
}

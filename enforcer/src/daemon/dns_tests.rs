use std::{collections::BTreeMap, sync::Mutex};

use super::*;

const CEILING: Duration = Duration::from_secs(60);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn answer(addrs: &[&str], valid_until: Instant) -> LookupResult {
    Ok(HostAnswer {
        addrs: addrs.iter().map(|a| ip(a)).collect(),
        valid_until,
    })
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

/// Answers set by the test; remembers what was asked.
#[derive(Default)]
pub(crate) struct FakeLookup {
    pub(crate) answers: Mutex<BTreeMap<String, LookupResult>>,
    pub(crate) asked: Mutex<Vec<String>>,
}

impl FakeLookup {
    pub(crate) fn set(&self, name: &str, result: LookupResult) {
        self.answers.lock().unwrap().insert(name.into(), result);
    }
}

impl HostLookup for FakeLookup {
    fn lookup(&self, names: &[String]) -> Vec<(String, LookupResult)> {
        self.asked.lock().unwrap().extend(names.iter().cloned());
        let answers = self.answers.lock().unwrap();
        names
            .iter()
            .filter_map(|n| answers.get(n).map(|a| (n.clone(), a.clone())))
            .collect()
    }
}

#[test]
fn the_next_refresh_follows_the_ttl_within_floor_and_ceiling() {
    let t0 = Instant::now();
    let mut table = HostTable::new(CEILING);
    table.record(
        vec![
            (
                "ttl30.example".into(),
                answer(&["192.0.2.1"], t0 + Duration::from_secs(30)),
            ),
            ("ttl0.example".into(), answer(&["192.0.2.2"], t0)),
            (
                "hosts-file".into(),
                answer(&["192.0.2.3"], t0 + Duration::from_secs(86_400)),
            ),
        ],
        t0,
    );
    assert_eq!(
        table.next_refresh(),
        Some(t0 + REFRESH_FLOOR),
        "a TTL of 0 waits the floor"
    );
    assert_eq!(table.due_now(t0 + REFRESH_FLOOR), names(&["ttl0.example"]));
    assert_eq!(
        table.due_now(t0 + Duration::from_secs(30)),
        names(&["ttl0.example", "ttl30.example"])
    );
    assert_eq!(
        table.due_now(t0 + CEILING - Duration::from_millis(1)).len(),
        2,
        "no TTL: the ceiling"
    );
    assert_eq!(table.due_now(t0 + CEILING).len(), 3);

    // A ceiling below the floor lowers the floor too (an operator asked for it).
    let mut tight = HostTable::new(Duration::from_secs(2));
    tight.record(vec![("a".into(), answer(&["192.0.2.1"], t0))], t0);
    assert_eq!(tight.next_refresh(), Some(t0 + Duration::from_secs(2)));
}

#[test]
fn a_failed_lookup_keeps_the_addresses_and_backs_off_to_the_ceiling() {
    let t0 = Instant::now();
    let mut table = HostTable::new(CEILING);
    table.record(
        vec![(
            "api.example".into(),
            answer(&["192.0.2.1"], t0 + Duration::from_secs(20)),
        )],
        t0,
    );
    let mut now = t0 + Duration::from_secs(20);
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert!(
            !table.record(vec![("api.example".into(), Err("timed out".into()))], now),
            "a failure is no change"
        );
        let next = table.next_refresh().unwrap();
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    assert_eq!(
        table.resolved().get("api.example"),
        &[ip("192.0.2.1")],
        "the old addresses stay"
    );
    // An empty answer is a failure too, not "no addresses allowed".
    table.record(
        vec![("api.example".into(), answer(&[], now + CEILING))],
        now,
    );
    assert_eq!(table.resolved().get("api.example"), &[ip("192.0.2.1")]);
    // Success resets the back-off.
    table.record(
        vec![(
            "api.example".into(),
            answer(&["192.0.2.1"], now + Duration::from_secs(20)),
        )],
        now,
    );
    assert_eq!(table.next_refresh(), Some(now + Duration::from_secs(20)));
    table.record(vec![("api.example".into(), Err("refused".into()))], now);
    assert_eq!(table.next_refresh(), Some(now + REFRESH_FLOOR));
}

#[test]
fn only_a_different_address_set_is_a_change() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(30);
    let mut table = HostTable::new(CEILING);
    // Names the table did not know are not changes: the load that adds them compiles anyway.
    assert!(!table.record(
        vec![("a".into(), answer(&["192.0.2.1", "2001:db8::1"], later))],
        t0
    ));
    assert!(!table.record(vec![("never".into(), Err("nxdomain".into()))], t0));
    assert!(
        table.resolved().get("never").is_empty(),
        "a name that never resolved matches nothing"
    );
    assert!(
        !table.record(
            vec![(
                "a".into(),
                answer(&["2001:db8::1", "192.0.2.1", "192.0.2.1"], later)
            )],
            t0
        ),
        "reordered and repeated: same set"
    );
    assert!(
        table.record(vec![("a".into(), answer(&["192.0.2.1"], later))], t0),
        "an address went away"
    );
    assert!(
        table.record(vec![("never".into(), answer(&["192.0.2.9"], later))], t0),
        "a name resolves at last"
    );
    table.retain(&["a".to_string()].into_iter().collect());
    assert!(!table.contains("never"));
    assert_eq!(table.resolved().get("a"), &[ip("192.0.2.1")]);
}

#[test]
fn names_never_looked_up_are_due_and_unanswered_names_fail() {
    let t0 = Instant::now();
    let mut table = HostTable::new(CEILING);
    table.record(
        vec![(
            "known".into(),
            answer(&["192.0.2.1"], t0 + Duration::from_secs(30)),
        )],
        t0,
    );
    let wanted = names(&["known", "new"]);
    assert_eq!(table.due(&wanted, t0), names(&["new"]));
    let fake = FakeLookup::default();
    let due = table.due(&wanted, t0);
    // The fake has no answer for "new": it still gets a schedule (retried at the floor).
    table.record(answers_for(&due, fake.lookup(&due)), t0);
    assert!(table.contains("new"));
    assert_eq!(table.next_refresh(), Some(t0 + REFRESH_FLOOR));
}

/// The real resolver, without the network: /etc/hosts (every Linux has `localhost` there, and
/// hickory answers it itself per RFC 6761) and the reserved `.invalid` domain, which it refuses
/// without asking a server.
#[test]
fn the_system_resolver_answers_localhost_without_a_ttl_and_refuses_invalid_names() {
    let before = Instant::now();
    let mut answers: BTreeMap<String, LookupResult> = SystemResolver
        .lookup(&names(&["localhost", "no-such-host.invalid"]))
        .into_iter()
        .collect();
    let elapsed = before.elapsed();
    let localhost = answers
        .remove("localhost")
        .expect("an answer for localhost")
        .expect("localhost resolves");
    assert!(localhost.addrs.contains(&ip("127.0.0.1")), "{localhost:?}");
    assert!(
        localhost.valid_until >= before + Duration::from_secs(3600),
        "an /etc/hosts answer has no TTL (hickory gives it a day): {localhost:?}"
    );
    let invalid = answers
        .remove("no-such-host.invalid")
        .expect("an answer for the .invalid name");
    assert!(invalid.is_err(), "{invalid:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "lookups that need no server took {elapsed:?}"
    );
    // Called from inside a runtime (the daemon's event loop during a load): must not panic.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inside = runtime.block_on(async { SystemResolver.lookup(&names(&["localhost"])) });
    assert!(matches!(&inside[..], [(_, Ok(_))]), "{inside:?}");
}

/// `@resolvers` is answered from /etc/resolv.conf (as hickory reads it), beside real names, and
/// never asked of a name server.
#[test]
fn resolvers_are_read_from_resolv_conf() {
    let want = crate::policy::hosts::system_resolvers().expect("/etc/resolv.conf reads");
    assert!(!want.is_empty());
    let answers: BTreeMap<String, LookupResult> = SystemResolver
        .lookup(&names(&[crate::policy::net::RESOLVERS, "localhost"]))
        .into_iter()
        .collect();
    let resolvers = answers[crate::policy::net::RESOLVERS]
        .as_ref()
        .expect("answered");
    assert_eq!(resolvers.addrs, want);
    assert!(answers["localhost"].is_ok(), "{answers:?}");
}

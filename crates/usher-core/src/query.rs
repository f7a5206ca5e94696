//! The one query model for lists of sessions, shared by the console, the REST API and
//! the CLI: the same parameters mean the same thing everywhere (SPEC §3).

use crate::duration::HumanDuration;
use crate::ids::SessionId;
use crate::session::SessionKind;
use crate::user::Username;
use ipnet::IpNet;
use jiff::{SignedDuration, Timestamp};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;

/// Largest page an ordinary list returns; exports may ask for `all`.
pub const MAX_LIMIT: u32 = 10_000;
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest offset accepted: far past any real list, small enough to stay exact.
pub const MAX_OFFSET: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    User,
    Type,
    Ip,
    Client,
    Requests,
    LastAccess,
    Created,
}

impl SortKey {
    pub const CHOICES: &'static str = "id, user, type, ip, client, requests, last_access, created";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => Self::Id,
            "user" => Self::User,
            "type" => Self::Type,
            "ip" => Self::Ip,
            "client" => Self::Client,
            "requests" => Self::Requests,
            "last_access" => Self::LastAccess,
            "created" => Self::Created,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::User => "user",
            Self::Type => "type",
            Self::Ip => "ip",
            Self::Client => "client",
            Self::Requests => "requests",
            Self::LastAccess => "last_access",
            Self::Created => "created",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u32),
    All,
}

/// A parameter that is wrong, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct QueryError {
    pub param: String,
    pub message: String,
}

fn bad(param: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        param: param.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    pub user: Option<Username>,
    pub anonymous: Option<bool>,
    pub kind: Option<SessionKind>,
    pub ip: Option<IpNet>,
    /// Case-insensitive substring of user, IP, client summary or session id.
    pub q: Option<String>,
    pub active_within: Option<SignedDuration>,
    pub sort: SortKey,
    pub order: Order,
    pub offset: u64,
    pub limit: Limit,
}

impl Default for SessionQuery {
    fn default() -> Self {
        Self {
            user: None,
            anonymous: None,
            kind: None,
            ip: None,
            q: None,
            active_within: None,
            sort: SortKey::LastAccess,
            order: Order::Desc,
            offset: 0,
            limit: Limit::Count(DEFAULT_LIMIT),
        }
    }
}

/// Parameter names a session list understands.
pub const PARAMS: &str = "user, anonymous, type, ip, q, active_within, sort, order, offset, limit";

impl SessionQuery {
    /// Parses query parameters; an unknown parameter or a bad value is an error naming
    /// it. `limit=all` is accepted only when `allow_all` (exports).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        allow_all: bool,
    ) -> Result<Self, QueryError> {
        let mut q = Self::default();
        for (key, raw) in pairs {
            // The API takes an empty value for a mistake; a form that submits blank
            // fields (the console's filter) drops them before it parses.
            if raw.is_empty() {
                return Err(bad(key, "empty; leave the parameter out instead"));
            }
            let value = raw.trim();
            match key {
                "user" => {
                    q.user = Some(Username::parse(value).map_err(|e| bad("user", e.to_string()))?)
                }
                "anonymous" => {
                    q.anonymous = Some(match value {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(bad("anonymous", "use true or false")),
                    })
                }
                "type" => {
                    q.kind = Some(
                        SessionKind::parse(value).ok_or_else(|| bad("type", "use web or api"))?,
                    )
                }
                "ip" => {
                    let net = value
                        .parse::<IpNet>()
                        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            bad("ip", "an address (192.0.2.7) or a CIDR range (10.0.0.0/8)")
                        })?;
                    q.ip = Some(net.trunc());
                }
                "q" => {
                    // Searched as given: whitespace can be part of what is sought.
                    if raw.chars().count() > 200 {
                        return Err(bad("q", "at most 200 characters"));
                    }
                    q.q = Some(raw.to_lowercase());
                }
                "active_within" => {
                    let d: HumanDuration =
                        value.parse().map_err(|e: crate::duration::DurationError| {
                            bad("active_within", e.to_string())
                        })?;
                    q.active_within = Some(d.get());
                }
                "sort" => {
                    q.sort = SortKey::parse(value).ok_or_else(|| {
                        bad(
                            "sort",
                            format!("`{value}` is not a column; use one of {}", SortKey::CHOICES),
                        )
                    })?
                }
                "order" => {
                    q.order = match value {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => return Err(bad("order", "use asc or desc")),
                    }
                }
                "offset" => {
                    q.offset = value
                        .parse()
                        .ok()
                        .filter(|n| *n <= MAX_OFFSET)
                        .ok_or_else(|| {
                            bad("offset", format!("a whole number from 0 to {MAX_OFFSET}"))
                        })?
                }
                "limit" => {
                    q.limit = if value == "all" {
                        if !allow_all {
                            return Err(bad(
                                "limit",
                                format!(
                                    "`all` is for exports (sessions.csv); use 1 to {MAX_LIMIT}"
                                ),
                            ));
                        }
                        Limit::All
                    } else {
                        match value.parse::<u32>() {
                            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Limit::Count(n),
                            _ => {
                                return Err(bad(
                                    "limit",
                                    format!("a number from 1 to {MAX_LIMIT}"),
                                ));
                            }
                        }
                    }
                }
                other => {
                    return Err(bad(
                        other,
                        format!("unknown parameter; use one of {PARAMS}"),
                    ));
                }
            }
        }
        Ok(q)
    }

    /// The query as parameters again (defaults left out): what a console link carries.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(u) = &self.user {
            p.push(("user", u.to_string()));
        }
        if let Some(a) = self.anonymous {
            p.push(("anonymous", a.to_string()));
        }
        if let Some(k) = self.kind {
            p.push(("type", k.as_str().to_owned()));
        }
        if let Some(ip) = &self.ip {
            p.push(("ip", ip.to_string()));
        }
        if let Some(q) = &self.q {
            p.push(("q", q.clone()));
        }
        if let Some(d) = self.active_within {
            p.push((
                "active_within",
                HumanDuration::from_millis(d.as_millis() as i64).to_string(),
            ));
        }
        if self.sort != SortKey::LastAccess {
            p.push(("sort", self.sort.as_str().to_owned()));
        }
        if self.order != Order::Desc {
            p.push(("order", "asc".to_owned()));
        }
        if self.offset != 0 {
            p.push(("offset", self.offset.to_string()));
        }
        match self.limit {
            Limit::Count(DEFAULT_LIMIT) => {}
            Limit::Count(n) => p.push(("limit", n.to_string())),
            Limit::All => p.push(("limit", "all".to_owned())),
        }
        p
    }

    /// Whether anything narrows the selection (an end-by-filter without one is refused).
    pub fn has_filter(&self) -> bool {
        self.user.is_some()
            || self.anonymous.is_some()
            || self.kind.is_some()
            || self.ip.is_some()
            || self.q.is_some()
            || self.active_within.is_some()
    }

    pub fn matches<S: Listable + ?Sized>(&self, s: &S, now: Timestamp) -> bool {
        if let Some(u) = &self.user
            && s.user() != Some(u)
        {
            return false;
        }
        if let Some(anon) = self.anonymous
            && s.user().is_none() != anon
        {
            return false;
        }
        if let Some(k) = self.kind
            && s.kind() != k
        {
            return false;
        }
        if let Some(net) = &self.ip
            && !net.contains(&s.ip())
        {
            return false;
        }
        if let Some(d) = self.active_within
            && now.duration_since(s.last_access_at()) > d
        {
            return false;
        }
        if let Some(needle) = &self.q {
            let hit = s
                .user()
                .is_some_and(|u| u.as_str().to_lowercase().contains(needle))
                || s.ip().to_string().contains(needle)
                || s.id().as_str().contains(needle)
                || s.client().to_lowercase().contains(needle);
            if !hit {
                return false;
            }
        }
        true
    }

    /// The value a session is sorted by, read once: counts change while a list is
    /// being made, and a sort whose keys move under it is not a total order (Rust's
    /// sorts may panic on that; a heap may misorder).
    fn sort_value<S: Listable + ?Sized>(&self, s: &S) -> SortValue {
        match self.sort {
            SortKey::Id => SortValue::None,
            SortKey::User => SortValue::Text(s.user().map(|u| u.as_str().to_owned())),
            SortKey::Type => SortValue::Text(Some(s.kind().as_str().to_owned())),
            SortKey::Ip => SortValue::Ip(s.ip()),
            SortKey::Client => SortValue::Text(Some(s.client().into_owned())),
            SortKey::Requests => SortValue::Number(s.requests()),
            SortKey::LastAccess => SortValue::Time(s.last_access_at()),
            SortKey::Created => SortValue::Time(s.created_at()),
        }
    }

    /// A collector for one page: offer it every session (by reference) and it keeps,
    /// and clones, only those that can still be on the page.
    pub fn page<S>(&self, now: Timestamp) -> PageCollector<'_, S> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let keep = match self.limit {
            Limit::Count(n) => Some(offset.saturating_add(n as usize)),
            Limit::All => None,
        };
        PageCollector {
            query: self,
            now,
            keep,
            total: 0,
            heap: std::collections::BinaryHeap::new(),
        }
    }

    /// Filters, sorts and cuts out the requested page; also returns how many matched.
    pub fn run<S: Listable + Clone>(
        &self,
        rows: impl IntoIterator<Item = S>,
        now: Timestamp,
    ) -> (u64, Vec<S>) {
        let mut page = self.page(now);
        for s in rows {
            page.offer(&s);
        }
        page.finish()
    }
}

/// A sort key, snapshotted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    None,
    Number(u64),
    Time(Timestamp),
    Ip(IpAddr),
    Text(Option<String>),
}

struct Ranked<S> {
    key: (SortValue, SessionId),
    desc: bool,
    session: S,
}

impl<S> Ranked<S> {
    /// Page order: the first on the page is the least.
    fn order(&self, other: &Self) -> Ordering {
        let o = self.key.cmp(&other.key);
        if self.desc { o.reverse() } else { o }
    }
}

impl<S> PartialEq for Ranked<S> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<S> Eq for Ranked<S> {}
impl<S> PartialOrd for Ranked<S> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<S> Ord for Ranked<S> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order(other)
    }
}

/// See [`SessionQuery::page`]. A max-heap of the best `offset + limit` seen so far: its
/// top is the one to drop when a better one comes.
pub struct PageCollector<'q, S> {
    query: &'q SessionQuery,
    now: Timestamp,
    /// `None`: every match (`limit=all`).
    keep: Option<usize>,
    total: u64,
    heap: std::collections::BinaryHeap<Ranked<S>>,
}

impl<S> PageCollector<'_, S> {
    pub fn offer(&mut self, s: &S)
    where
        S: Listable + Clone,
    {
        self.offer_as(s, || s.clone());
    }

    /// Offers `s` as seen through a view, and keeps `own()` if it makes the page.
    pub fn offer_as<V: Listable + ?Sized>(&mut self, s: &V, own: impl FnOnce() -> S) {
        if !self.query.matches(s, self.now) {
            return;
        }
        self.total += 1;
        if self.keep == Some(0) {
            return;
        }
        let key = (self.query.sort_value(s), s.id());
        let desc = self.query.order == Order::Desc;
        if let Some(keep) = self.keep
            && self.heap.len() >= keep
        {
            let better = self.heap.peek().is_some_and(|worst| {
                let o = key.cmp(&worst.key);
                (if desc { o.reverse() } else { o }) == Ordering::Less
            });
            if !better {
                return;
            }
            self.heap.pop();
        }
        // Cloned only when it makes the page so far.
        self.heap.push(Ranked {
            key,
            desc,
            session: own(),
        });
    }

    /// How many matched, and the page in order.
    pub fn finish(self) -> (u64, Vec<S>) {
        let offset = usize::try_from(self.query.offset).unwrap_or(usize::MAX);
        let page = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .skip(offset)
            .map(|r| r.session)
            .collect();
        (self.total, page)
    }
}

/// What a session list needs to know of a session, whatever holds it.
pub trait Listable {
    fn id(&self) -> SessionId;
    fn user(&self) -> Option<&Username>;
    fn kind(&self) -> SessionKind;
    fn ip(&self) -> IpAddr;
    fn client(&self) -> Cow<'_, str>;
    fn requests(&self) -> u64;
    fn created_at(&self) -> Timestamp;
    fn last_access_at(&self) -> Timestamp;
}

impl<T: Listable + ?Sized> Listable for std::sync::Arc<T> {
    fn id(&self) -> SessionId {
        (**self).id()
    }
    fn user(&self) -> Option<&Username> {
        (**self).user()
    }
    fn kind(&self) -> SessionKind {
        (**self).kind()
    }
    fn ip(&self) -> IpAddr {
        (**self).ip()
    }
    fn client(&self) -> Cow<'_, str> {
        (**self).client()
    }
    fn requests(&self) -> u64 {
        (**self).requests()
    }
    fn created_at(&self) -> Timestamp {
        (**self).created_at()
    }
    fn last_access_at(&self) -> Timestamp {
        (**self).last_access_at()
    }
}

/// Rows that carry every field a list looks at.
macro_rules! listable_row {
    ($t:ty) => {
        impl Listable for $t {
            fn id(&self) -> SessionId {
                self.id
            }
            fn user(&self) -> Option<&Username> {
                self.user.as_ref()
            }
            fn kind(&self) -> SessionKind {
                self.kind
            }
            fn ip(&self) -> IpAddr {
                self.ip
            }
            fn client(&self) -> Cow<'_, str> {
                Cow::Borrowed(&self.client)
            }
            fn requests(&self) -> u64 {
                self.requests
            }
            fn created_at(&self) -> Timestamp {
                self.created_at
            }
            fn last_access_at(&self) -> Timestamp {
                self.last_access_at
            }
        }
    };
}

listable_row!(crate::SessionRecord);
listable_row!(crate::SessionInfo);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<SessionQuery, QueryError> {
        SessionQuery::parse(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, ""))),
            false,
        )
    }

    #[test]
    fn parses_every_parameter() {
        let q = parse("user=alice&anonymous=false&type=web&ip=10.1.2.3/8&q=Fire&active_within=15m&sort=requests&order=asc&offset=5&limit=100").unwrap();
        assert_eq!(q.user.unwrap().as_str(), "alice");
        assert_eq!(q.ip.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(q.q.as_deref(), Some("fire"));
        assert_eq!(q.sort, SortKey::Requests);
        assert_eq!(q.limit, Limit::Count(100));
        assert!(parse("").unwrap() == SessionQuery::default());
    }

    #[test]
    fn names_the_wrong_parameter() {
        for (input, param) in [
            ("sort=banana", "sort"),
            ("order=up", "order"),
            ("offset=-1", "offset"),
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=all", "limit"),
            ("ip=10.0.0.0/33", "ip"),
            ("type=cli", "type"),
            ("anonymous=maybe", "anonymous"),
            ("active_within=soon", "active_within"),
            ("user=a b", "user"),
            ("page=2", "page"),
        ] {
            assert_eq!(parse(input).unwrap_err().param, param, "{input}");
        }
        assert!(SessionQuery::parse([("limit", "all")], true).is_ok());
    }

    #[derive(Clone)]
    struct Row(SessionId, Option<Username>, IpAddr, u64);

    impl Listable for Row {
        fn id(&self) -> SessionId {
            self.0
        }
        fn user(&self) -> Option<&Username> {
            self.1.as_ref()
        }
        fn kind(&self) -> SessionKind {
            SessionKind::Web
        }
        fn ip(&self) -> IpAddr {
            self.2
        }
        fn client(&self) -> Cow<'_, str> {
            Cow::Borrowed("Firefox 131 on Linux")
        }
        fn requests(&self) -> u64 {
            self.3
        }
        fn created_at(&self) -> Timestamp {
            Timestamp::UNIX_EPOCH
        }
        fn last_access_at(&self) -> Timestamp {
            Timestamp::UNIX_EPOCH
        }
    }

    #[test]
    fn filters_sorts_and_pages_without_overlap() {
        let rows = || {
            (0..20u64).map(|i| {
                let user = (i % 2 == 0).then(|| Username::parse("alice").unwrap());
                let ip = IpAddr::from([10, 0, (i / 10) as u8, i as u8]);
                Row(SessionId::generate().unwrap(), user, ip, i % 7)
            })
        };
        let rows: Vec<Row> = rows().collect();
        let now = Timestamp::UNIX_EPOCH;
        let q = parse("sort=requests&order=desc&limit=4&ip=10.0.0.0/24&anonymous=false").unwrap();
        let (total, page) = q.run(rows.iter().map(|r| Row(r.0, r.1.clone(), r.2, r.3)), now);
        assert_eq!(total, 5, "even rows with 10.0.0.x");
        assert_eq!(page.len(), 4);
        assert!(page.windows(2).all(|w| w[0].3 >= w[1].3));
        let mut seen = Vec::new();
        for offset in [0, 3, 6] {
            let q = parse(&format!("sort=requests&limit=3&offset={offset}")).unwrap();
            let (total, page) = q.run(rows.iter().map(|r| Row(r.0, r.1.clone(), r.2, r.3)), now);
            assert_eq!(total, 20);
            seen.extend(page.iter().map(|r| r.0));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "pages neither overlap nor skip");
        let q = parse("q=firefox&offset=100").unwrap();
        let (total, page) = q.run(rows.iter().map(|r| Row(r.0, r.1.clone(), r.2, r.3)), now);
        assert_eq!((total, page.len()), (20, 0));
    }

    #[test]
    fn every_page_is_the_slice_of_the_full_sort() {
        let rows: Vec<Row> = (0..500u64)
            .map(|i| {
                let ip = IpAddr::from([10, 0, (i / 256) as u8, i as u8]);
                Row(SessionId::generate().unwrap(), None, ip, (i * 7919) % 97)
            })
            .collect();
        let now = Timestamp::UNIX_EPOCH;
        for (order, flip) in [("desc", true), ("asc", false)] {
            let mut all = rows.clone();
            all.sort_by(|a, b| {
                let o = (a.3, a.0).cmp(&(b.3, b.0));
                if flip { o.reverse() } else { o }
            });
            for (offset, limit) in [(0, 25), (25, 25), (480, 50), (0, 500), (600, 10)] {
                let q = parse(&format!(
                    "sort=requests&order={order}&offset={offset}&limit={limit}"
                ))
                .unwrap();
                let (total, page) = q.run(rows.iter().cloned(), now);
                assert_eq!(total, 500);
                let want: Vec<SessionId> =
                    all.iter().skip(offset).take(limit).map(|r| r.0).collect();
                let got: Vec<SessionId> = page.iter().map(|r| r.0).collect();
                assert_eq!(got, want, "{order} {offset}+{limit}");
            }
        }
        let q = SessionQuery::parse([("sort", "requests"), ("limit", "all")], true).unwrap();
        assert_eq!(q.run(rows.iter().cloned(), now).1.len(), 500);
    }
}

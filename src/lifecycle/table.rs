//! A route table: prefix -> candidate routes from different protocols, the
//! best one being the highest preference (the earliest import wins a tie).
//! Every mutation reports whether the best route changed, which is what
//! the runtime exports.

use super::prefix::Prefix;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// One protocol's route to a prefix. Cheap to clone (shared strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub owner: Arc<str>,
    pub preference: u32,
    /// Opaque attributes, a JSON text as imported.
    pub attrs: Arc<str>,
}

/// The best route of `prefix` before and after a mutation (they differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: Prefix,
    pub old: Option<Route>,
    pub new: Option<Route>,
}

#[derive(Default)]
pub struct Table {
    routes: BTreeMap<Prefix, Vec<Route>>,
    candidates: usize,
}

impl Table {
    /// Number of prefixes with at least one route.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Number of routes, all candidates counted.
    #[cfg(test)]
    pub fn candidates(&self) -> usize {
        self.candidates
    }

    fn changed(prefix: Prefix, old: Option<Route>, new: Option<&Route>) -> Option<BestChange> {
        if old.as_ref() == new {
            return None;
        }
        Some(BestChange { prefix, old, new: new.cloned() })
    }

    /// Adds or replaces `route.owner`'s route to `prefix`.
    pub fn import(&mut self, prefix: Prefix, route: Route) -> Option<BestChange> {
        let list = self.routes.entry(prefix).or_default();
        let old = list.first().cloned();
        if let Some(i) = list.iter().position(|r| r.owner == route.owner) {
            list.remove(i);
        } else {
            self.candidates += 1;
        }
        let at = list.iter().position(|r| r.preference < route.preference).unwrap_or(list.len());
        list.insert(at, route);
        Self::changed(prefix, old, list.first())
    }

    /// Removes `owner`'s route to `prefix` (nothing if it has none).
    pub fn withdraw(&mut self, prefix: &Prefix, owner: &str) -> Option<BestChange> {
        let list = self.routes.get_mut(prefix)?;
        let i = list.iter().position(|r| &*r.owner == owner)?;
        let old = list.first().cloned();
        list.remove(i);
        self.candidates -= 1;
        let change = Self::changed(*prefix, old, list.first());
        if list.is_empty() {
            self.routes.remove(prefix);
        }
        change
    }

    /// Up to `n` best routes with prefixes after `cursor` (from the start
    /// when `None`), in prefix order.
    pub fn best_after(&self, cursor: Option<Prefix>, n: usize) -> impl Iterator<Item = (Prefix, &Route)> {
        let start = match cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        self.routes.range((start, Bound::Unbounded)).filter_map(|(p, v)| v.first().map(|r| (*p, r))).take(n)
    }

    /// Every prefix equal to or inside `within` (all when `None`), with
    /// its candidates best first.
    pub fn walk(&self, within: Option<Prefix>) -> Box<dyn Iterator<Item = (&Prefix, &Vec<Route>)> + '_> {
        match within {
            None => Box::new(self.routes.iter()),
            Some(p) => Box::new(self.routes.range(p..=p.last_subnet())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Prefix {
        Prefix::parse(t).unwrap()
    }

    fn r(owner: &str, preference: u32) -> Route {
        Route { owner: owner.into(), preference, attrs: "{}".into() }
    }

    #[test]
    fn best_is_highest_preference_then_first_imported() {
        let mut t = Table::default();
        let c = t.import(p("10.0.0.0/8"), r("a", 100)).unwrap();
        assert_eq!((c.old, c.new.unwrap().owner.as_ref()), (None, "a"));
        assert_eq!(t.import(p("10.0.0.0/8"), r("b", 100)), None, "a tie keeps the first");
        let c = t.import(p("10.0.0.0/8"), r("c", 200)).unwrap();
        assert_eq!(&*c.new.unwrap().owner, "c");
        assert_eq!(t.candidates(), 3);
        assert_eq!(t.withdraw(&p("10.0.0.0/8"), "b"), None, "not the best: no change");
        let c = t.withdraw(&p("10.0.0.0/8"), "c").unwrap();
        assert_eq!(&*c.new.unwrap().owner, "a");
        let c = t.withdraw(&p("10.0.0.0/8"), "a").unwrap();
        assert!(c.new.is_none() && t.is_empty() && t.candidates() == 0);
        assert_eq!(t.withdraw(&p("10.0.0.0/8"), "a"), None);
    }

    #[test]
    fn reimport_replaces_and_reports_attribute_changes() {
        let mut t = Table::default();
        t.import(p("10.0.0.0/8"), r("a", 100));
        assert_eq!(t.import(p("10.0.0.0/8"), r("a", 100)), None, "same route again");
        let mut changed = r("a", 100);
        changed.attrs = r#"{"x":1}"#.into();
        assert!(t.import(p("10.0.0.0/8"), changed).is_some());
        t.import(p("10.0.0.0/8"), r("b", 150));
        let c = t.import(p("10.0.0.0/8"), r("a", 300)).unwrap();
        assert_eq!(&*c.old.unwrap().owner, "b");
        assert_eq!(t.candidates(), 2);
    }

    #[test]
    fn walks_and_cursors() {
        let mut t = Table::default();
        for x in ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "11.0.0.0/8", "fd00::/8"] {
            t.import(p(x), r("a", 1));
        }
        let within: Vec<String> = t.walk(Some(p("10.1.0.0/16"))).map(|(p, _)| p.to_string()).collect();
        assert_eq!(within, ["10.1.0.0/16", "10.1.2.0/24"]);
        assert_eq!(t.walk(None).count(), 5);
        let first: Vec<Prefix> = t.best_after(None, 2).map(|(p, _)| p).collect();
        assert_eq!(first.len(), 2);
        let rest: Vec<Prefix> = t.best_after(Some(first[1]), 10).map(|(p, _)| p).collect();
        assert_eq!(rest.len(), 3);
        assert_eq!(rest[2], p("fd00::/8"));
    }
}

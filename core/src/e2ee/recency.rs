//! Which sessions of a person were used least recently, for the per-person session cap: kept per
//! person and ordered by use, so that a message costs a logarithm of that person's sessions,
//! never a walk over every session the account holds.
//!
//! Recency counts from this process's start: sessions loaded from a store rank by name, older
//! than any used since, as they always have.

use std::collections::{BTreeMap, HashMap};

/// The person a session name belongs to (see [`super::account`]); `None` for names the cap
/// does not apply to.
pub(crate) type Owner = fn(&str) -> Option<&str>;

/// Session names of each person, least recently used first.
#[derive(Debug)]
pub(crate) struct Recency {
    owner: Owner,
    /// Each tracked name's rank: lower is less recently used.
    ranks: HashMap<String, i64>,
    /// Per person, names by rank.
    by_person: HashMap<String, BTreeMap<i64, String>>,
    /// The rank the next use gets.
    next_used: i64,
    /// The rank a name put back as the least recently used gets.
    next_oldest: i64,
}

impl Recency {
    /// No names yet; `owner` tells whose a name is.
    pub(crate) fn new(owner: Owner) -> Self {
        Recency { owner, ranks: HashMap::new(), by_person: HashMap::new(), next_used: 0, next_oldest: -1 }
    }

    /// `name` was just used: it becomes its person's most recently used.
    pub(crate) fn touch(&mut self, name: &str) {
        let rank = self.next_used;
        self.next_used += 1;
        self.place(name, rank);
    }

    /// `name` is back (a discarded change restored it) and was not tracked: the least recently
    /// used. A name already tracked keeps its place.
    pub(crate) fn restore(&mut self, name: &str) {
        if self.ranks.contains_key(name) {
            return;
        }
        let rank = self.next_oldest;
        self.next_oldest -= 1;
        self.place(name, rank);
    }

    /// Forgets `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        let Some(rank) = self.ranks.remove(name) else { return };
        if let Some(owner) = (self.owner)(name)
            && let Some(theirs) = self.by_person.get_mut(owner)
        {
            theirs.remove(&rank);
            if theirs.is_empty() {
                self.by_person.remove(owner);
            }
        }
    }

    /// The least recently used names of `name`'s person beyond `cap`, never `name` itself;
    /// forgotten here, for the caller to drop.
    pub(crate) fn beyond_cap(&mut self, name: &str, cap: usize) -> Vec<String> {
        let Some(owner) = (self.owner)(name) else { return Vec::new() };
        let Some(theirs) = self.by_person.get(owner) else { return Vec::new() };
        let excess = theirs.len().saturating_sub(cap);
        let evicted: Vec<String> =
            theirs.values().filter(|existing| existing.as_str() != name).take(excess).cloned().collect();
        for existing in &evicted {
            self.remove(existing);
        }
        evicted
    }

    fn place(&mut self, name: &str, rank: i64) {
        let Some(owner) = (self.owner)(name) else { return };
        let theirs = self.by_person.entry(owner.to_owned()).or_default();
        if let Some(previous) = self.ranks.insert(name.to_owned(), rank) {
            theirs.remove(&previous);
        }
        theirs.insert(rank, name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> Option<&str> {
        name.split_once('/').map(|(person, _)| person)
    }

    #[test]
    fn the_least_recently_used_of_a_person_go_first_and_only_theirs() {
        let mut recency = Recency::new(owner);
        for name in ["a/1", "a/2", "b/1", "a/3", "nobody"] {
            recency.touch(name);
        }
        recency.touch("a/1");
        // a holds a/2, a/3, a/1 (oldest first): one beyond a cap of 2.
        assert_eq!(recency.beyond_cap("a/1", 2), vec!["a/2".to_owned()]);
        assert_eq!(recency.beyond_cap("a/1", 2), Vec::<String>::new(), "already dropped");
        // The name just used is never its own victim.
        recency.restore("a/9");
        assert_eq!(recency.beyond_cap("a/9", 0), vec!["a/3".to_owned(), "a/1".to_owned()]);
        assert_eq!(recency.beyond_cap("b/1", 1), Vec::<String>::new());
        assert_eq!(recency.beyond_cap("nobody", 0), Vec::<String>::new(), "names without an owner are not capped");
    }

    #[test]
    fn a_restored_name_is_the_oldest_and_a_tracked_one_keeps_its_place() {
        let mut recency = Recency::new(owner);
        recency.touch("a/1");
        recency.touch("a/2");
        recency.restore("a/3");
        recency.restore("a/2");
        assert_eq!(recency.beyond_cap("a/2", 2), vec!["a/3".to_owned()]);
        recency.remove("a/1");
        assert_eq!(recency.beyond_cap("a/2", 0), Vec::<String>::new(), "only the name in use is left");
    }
}

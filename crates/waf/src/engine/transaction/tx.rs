//! `TX`, the transaction's own variables. Those the rule set names literally have numbers
//! ([`TxNames`]): their values sit in a vector by number, so that rules reading and setting
//! them (most of CRS's hundreds of `TX` checks and `setvar`s per request) hash nothing. Names
//! made at run time (`setvar:tx.%{rule.id}_...`) go by name: to their number when the rule set
//! has one, to a hash map otherwise.

use std::sync::Arc;

use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use super::super::compile::{TxName, TxNames};
use super::super::fast_hash::SeededHash;
use super::{Matched, MatchedRef, ROOM};

/// The `TX` collection of one transaction. Each variable is read as a match on it records it
/// (`TX:key` and the value), so that matching a `TX` variable copies nothing.
#[derive(Debug)]
pub(super) struct TxVars<'r> {
    names: &'r TxNames,
    /// By number, where the variable is: small and without destructor, so that a transaction
    /// starts and ends without a walk over every name of the rule set dropping values.
    numbered: Vec<At<'r>>,
    /// The values of the numbered variables the transaction set itself, which `numbered`
    /// points into. Their names are the rule set's ([`TxNames`]), borrowed: a reference count
    /// on a name the rule set holds would be written by every worker's core in turn.
    own: Vec<Arc<[u8]>>,
    /// By lowercase key, those the rule set does not name.
    other: HashMap<TxName, Arc<[u8]>, SeededHash>,
}

/// Where a numbered variable is.
#[derive(Clone, Copy, Debug)]
enum At<'r> {
    Unset,
    /// As a folded step set it: the rule set holds it (setting the hundred-odd variables of
    /// CRS's set-up takes no reference count).
    Baked(&'r Matched),
    /// In `own`, at this index.
    Own(u32),
    /// Deleted after the transaction set it: unset, its place in `own` kept for the next set,
    /// so that deleting and setting a variable again (once per value of a collection, say)
    /// does not grow `own`.
    Gone(u32),
}

impl<'r> TxVars<'r> {
    pub(super) fn new(names: &'r TxNames) -> TxVars<'r> {
        // CRS makes a few per request (920450: one per header, and browsers send a dozen or
        // more headers), and sets a few numbered ones of its own (anomaly scores, captures).
        TxVars {
            names,
            numbered: vec![At::Unset; names.len()],
            own: Vec::with_capacity(ROOM),
            other: HashMap::with_capacity_and_hasher(24, SeededHash::default()),
        }
    }

    /// Variable `n`, at `at`.
    fn at(&self, n: u32, at: At<'r>) -> Option<MatchedRef<'_>> {
        match at {
            At::Unset | At::Gone(_) => None,
            At::Baked((name, value)) => Some((name, value)),
            At::Own(i) => Some((self.names.at(n).name(), self.own.get(i as usize)?)),
        }
    }

    /// The lowercase key and the variable by number.
    pub(super) fn numbered(&self, n: u32) -> Option<(&'r str, MatchedRef<'_>)> {
        let m = self.at(n, *self.numbered.get(n as usize)?)?;
        Some((self.names.at(n).key(), m))
    }

    /// The numbered variables, by number.
    pub(super) fn numbered_slots(&self) -> impl Iterator<Item = Option<MatchedRef<'_>>> {
        self.numbered.iter().enumerate().map(|(n, &at)| self.at(n as u32, at))
    }

    /// Sets variable `n` to a value the rule set holds, named as [`TxNames`] names it.
    pub(super) fn set_baked(&mut self, n: u32, m: &'r Matched) {
        self.numbered[n as usize] = At::Baked(m);
    }

    /// The lowercase key and the variable by lowercase key.
    pub(super) fn get(&self, key: &str) -> Option<(&str, MatchedRef<'_>)> {
        match self.names.number_of(key) {
            Some(n) => self.numbered(n),
            None => self.other.get_key_value(key).map(|(k, value)| (k.key(), (k.name(), value))),
        }
    }

    /// The value by lowercase key.
    pub(super) fn value(&self, key: &str) -> Option<&Arc<[u8]>> {
        self.get(key).map(|(_, (_, v))| v)
    }

    /// Sets numbered variable `n`, keeping its name.
    pub(super) fn set(&mut self, n: u32, value: Arc<[u8]>) {
        match self.numbered[n as usize] {
            // Set again, or after a delete: in its place.
            At::Own(i) | At::Gone(i) => {
                self.own[i as usize] = value;
                self.numbered[n as usize] = At::Own(i);
            }
            At::Baked(_) | At::Unset => {
                self.numbered[n as usize] = At::Own(self.own.len() as u32);
                self.own.push(value);
            }
        }
    }

    /// Deletes numbered variable `n`.
    pub(super) fn remove(&mut self, n: u32) {
        let at = &mut self.numbered[n as usize];
        *at = match *at {
            At::Own(i) | At::Gone(i) => At::Gone(i),
            At::Unset | At::Baked(_) => At::Unset,
        };
    }

    /// Sets (`Some`) or deletes (`None`) a variable named at run time to what `new` makes of
    /// its value, by its name as made, `TX:key` (lowercase key): by number when the rule set
    /// names its key (`lookup`: for a name that may be one), else by key, the name a new
    /// variable keeps being the one made. Looked up once, where reading it and then setting
    /// it took three (920450 sets one per request header).
    pub(super) fn update_made(
        &mut self,
        name: &str,
        lookup: bool,
        new: impl FnOnce(Option<&Arc<[u8]>>) -> Option<Arc<[u8]>>,
    ) {
        let key = name.get(TxName::PREFIX.len()..).unwrap_or_default();
        match lookup.then(|| self.names.number_of(key)).flatten() {
            Some(n) => self.update_numbered(n, new),
            None => self.update_other(key, name, new),
        }
    }

    /// [`TxVars::update_made`] for a variable the rule set numbers.
    pub(super) fn update_numbered(&mut self, n: u32, new: impl FnOnce(Option<&Arc<[u8]>>) -> Option<Arc<[u8]>>) {
        match new(self.numbered(n).map(|(_, (_, v))| v)) {
            Some(value) => self.set(n, value),
            None => self.remove(n),
        }
    }

    /// [`TxVars::update_made`] for a variable the rule set does not number: `key` is `name`'s.
    fn update_other(&mut self, key: &str, name: &str, new: impl FnOnce(Option<&Arc<[u8]>>) -> Option<Arc<[u8]>>) {
        match self.other.entry_ref(key) {
            EntryRef::Occupied(mut e) => match new(Some(e.get())) {
                Some(value) => *e.get_mut() = value,
                None => {
                    e.remove();
                }
            },
            EntryRef::Vacant(e) => {
                if let Some(value) = new(None) {
                    e.insert_with_key(TxName::made(name), value);
                }
            }
        }
    }

    /// The variables the rule set does not name, with their lowercase keys, in no particular
    /// order.
    pub(super) fn unnumbered(&self) -> impl Iterator<Item = (&str, MatchedRef<'_>)> {
        self.other.iter().map(|(k, value)| (k.key(), (k.name(), value)))
    }

    /// Every variable, with its lowercase key, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, MatchedRef<'_>)> {
        let numbered = (0..self.numbered.len() as u32).filter_map(|n| self.numbered(n));
        numbered.chain(self.unnumbered())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::tests::rules;
    use super::super::super::RuleSet;
    use super::super::Transaction;

    /// A rule set that numbers one variable, `x`.
    fn numbering_x() -> RuleSet {
        rules(
            r#"SecRuleEngine DetectionOnly
SecAction "id:1,phase:1,pass,nolog,setvar:tx.x=0""#,
        )
    }

    #[test]
    fn deleting_and_setting_again_reuses_the_place() {
        let rs = numbering_x();
        let mut t = Transaction::new(&rs);
        let n = rs.tx_names.number_of("x").expect("x is named");
        for i in 0..1000u32 {
            t.tx.set(n, i.to_string().as_bytes().into());
            assert_eq!(t.tx.value("x").map(|v| &v[..]), Some(i.to_string().as_bytes()));
            t.tx.remove(n);
            assert_eq!(t.tx.value("x"), None);
        }
        assert_eq!(t.tx.own.len(), 1);
        // Set again, the variable keeps the name the rule set gives it.
        t.tx.set(n, b"y"[..].into());
        assert_eq!(&**t.tx.numbered(n).expect("set").1 .0, "TX:x");
    }

    #[test]
    fn variables_named_at_run_time_are_set_changed_and_deleted_in_one_lookup() {
        let rs = numbering_x();
        let mut t = Transaction::new(&rs);
        let key = "header_name_920450_x-made";
        let made = "TX:header_name_920450_x-made";
        assert_eq!(rs.tx_names.number_of(key), None, "not a name the rule set gives");
        let add = |by: u8| move |cur: Option<&std::sync::Arc<[u8]>>| Some([cur.map_or(0, |c| c[0]) + by][..].into());
        t.tx.update_made(made, true, add(1));
        t.tx.update_made(made, true, add(2));
        assert_eq!(t.tx.value(key).map(|v| &v[..]), Some(&[3][..]));
        let (k, (name, _)) = t.tx.get(key).expect("set");
        assert_eq!((k, &**name), (key, made));
        // A name made at run time that the rule set gives goes to its number.
        t.tx.update_made("TX:x", true, add(5));
        let n = rs.tx_names.number_of("x").expect("x is named");
        assert_eq!(t.tx.numbered(n).map(|(_, (_, v))| &v[..]), Some(&[5][..]));
        assert_eq!(t.tx.unnumbered().count(), 1);
        t.tx.update_made(made, true, |cur| {
            assert!(cur.is_some());
            None
        });
        assert_eq!(t.tx.value(key), None);
        t.tx.update_made(made, true, |cur| {
            assert!(cur.is_none(), "deleted");
            None
        });
        assert_eq!(t.tx.unnumbered().count(), 0, "deleting what is not there makes nothing");
    }
}

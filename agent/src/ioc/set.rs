//! The loaded IoC set and the matcher: one hash map per value kind, keyed
//! by the typed value, with a per-process random hasher so attacker-chosen
//! strings (domains, paths from the monitored machine) cannot flood a bucket.

use std::collections::HashMap;
use std::net::IpAddr;

use ahash::RandomState;

use super::value::{IocValue, MAX_DOMAIN_LEN};
use super::{Detection, Observable, Observables, MAX_SEVERITY};
use crate::hashes::{Md5, Sha1, Sha256, Sha512};

/// One loaded IoC, as the matcher keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ioc {
    /// The typed value.
    pub value: IocValue,
    /// The value as written in the file (reported in `detection.iocs`).
    pub text: Box<str>,
    /// 0 to 10.
    pub severity: u8,
    /// The IoC's uuid, when it has one.
    pub uuid: Option<uuid::Uuid>,
    /// Where it came from (`source`), when said.
    pub source: Option<Box<str>>,
}

/// What the set keeps of an IoC: compact, because there may be millions.
#[derive(Debug, Clone)]
struct Entry {
    /// Reported in `detection.iocs`; for domains and paths also the exact key.
    text: Box<str>,
    severity: u8,
    source: Option<u16>,
    uuid: Option<uuid::Uuid>,
}

/// Entry ids for one value: a single id inline, or (high bit set) an index
/// into `IocSet::shared` when several IoCs carry the same value.
#[derive(Debug, Clone, Copy)]
struct Ids(u32);

const SHARED: u32 = 1 << 31;

/// Map keys that are already hashes with the set's random seed: no second hashing.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // only u64 keys are hashed with this hasher
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Hasher for digest keys: the digest bytes are already uniformly random, so
/// mixing 16 of them with a per-process secret key is enough to spread
/// buckets, and an attacker who controls files still cannot aim at one.
#[derive(Clone, Copy)]
struct DigestKey(u64, u64);

impl Default for DigestKey {
    fn default() -> Self {
        let s = RandomState::new();
        DigestKey(s.hash_one(1u8), s.hash_one(2u8))
    }
}

impl std::hash::BuildHasher for DigestKey {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher { key: *self, h: 0 }
    }
}

struct DigestHasher {
    key: DigestKey,
    h: u64,
}

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.h
    }
    fn write(&mut self, bytes: &[u8]) {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            let part = bytes.get(i..).unwrap_or(&[]);
            let n = part.len().min(8);
            w[..n].copy_from_slice(&part[..n]);
            u64::from_le_bytes(w)
        };
        // folded 128-bit multiply of key-mixed words
        let m = ((word(0) ^ self.key.0) as u128).wrapping_mul((word(8) ^ self.key.1) as u128);
        self.h ^= (m as u64) ^ ((m >> 64) as u64);
    }
    fn write_usize(&mut self, _len: usize) {
        // the array length prefix carries nothing for fixed-size digests
    }
}

type Map<K> = HashMap<K, Ids, RandomState>;
type DigestMap<K> = HashMap<K, Ids, DigestKey>;
/// Domain and path maps: seeded 64-bit hash → (ids, check), where `check` is
/// 32 bits of a second, independently seeded hash of the text. A probe whose
/// two hashes both agree is a hit without reading the IoC's text (two cache
/// misses saved); check 0 marks a slot two different texts share (a 64-bit
/// collision), whose hits are confirmed on the text.
type StrMap = HashMap<u64, (Ids, u32), std::hash::BuildHasherDefault<PreHashed>>;

/// Check value of a slot whose hits are confirmed on the text.
const VERIFY_TEXT: u32 = 0;

/// A typed, loaded set of IoCs.
///
/// Domains and paths are keyed by their seeded 64-bit hash (the map stays
/// small and a miss touches no string); a hit is confirmed by 32 bits of a
/// second, independently seeded hash, or against the text in the rare slot
/// two different texts share.
#[derive(Default)]
pub struct IocSet {
    entries: Vec<Entry>,
    shared: Vec<Vec<u32>>,
    sources: Vec<Box<str>>,
    source_ids: HashMap<Box<str>, u16, RandomState>,
    seed: RandomState,
    check_seed: RandomState,
    domains: StrMap,
    /// Bit n set: some domain IoC has n labels. Suffixes of other lengths are not looked up.
    domain_labels: u128,
    paths: StrMap,
    ips: Map<IpAddr>,
    md5: DigestMap<Md5>,
    sha1: DigestMap<Sha1>,
    sha256: DigestMap<Sha256>,
    sha512: DigestMap<Sha512>,
}

impl std::fmt::Debug for IocSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IocSet").field("len", &self.entries.len()).finish()
    }
}

fn add<K: std::hash::Hash + Eq, S: std::hash::BuildHasher>(
    map: &mut HashMap<K, Ids, S>,
    shared: &mut Vec<Vec<u32>>,
    key: K,
    id: u32,
) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, Ids(id));
        }
        Some(ids) if ids.0 & SHARED != 0 => shared[(ids.0 & !SHARED) as usize].push(id),
        Some(ids) => {
            shared.push(vec![ids.0, id]);
            ids.0 = SHARED | (shared.len() as u32 - 1);
        }
    }
}

fn add_text(map: &mut StrMap, shared: &mut Vec<Vec<u32>>, key: u64, check: u32, id: u32) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, (Ids(id), check));
        }
        Some((ids, slot_check)) => {
            if *slot_check != check {
                *slot_check = VERIFY_TEXT;
            }
            if ids.0 & SHARED != 0 {
                shared[(ids.0 & !SHARED) as usize].push(id);
            } else {
                shared.push(vec![ids.0, id]);
                ids.0 = SHARED | (shared.len() as u32 - 1);
            }
        }
    }
}

impl IocSet {
    /// 32 bits of the second hash of `text`, never VERIFY_TEXT.
    fn check_of(&self, text: &str) -> u32 {
        (self.check_seed.hash_one(text) as u32) | 1
    }

    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` more IoCs (avoids rehashing while loading).
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    /// Whether an entry among `ids` has this uuid (and, for domains and paths, this text).
    fn has(&self, ids: Option<&Ids>, text: Option<&str>, uuid: Option<uuid::Uuid>) -> bool {
        self.ids(ids).iter().any(|&id| {
            let e = &self.entries[id as usize];
            e.uuid == uuid && text.is_none_or(|t| *e.text == *t)
        })
    }

    /// Whether the set already holds an IoC with this value and uuid (a
    /// duplicate line, or a file given twice): its severity must not count twice.
    pub fn contains(&self, value: &IocValue, uuid: Option<uuid::Uuid>) -> bool {
        match value {
            IocValue::Domain(d) => {
                self.has(self.domains.get(&self.seed.hash_one(d.as_str())).map(|x| &x.0), Some(d.as_str()), uuid)
            }
            IocValue::Path(p) => self.has(self.paths.get(&self.seed.hash_one(&**p)).map(|x| &x.0), Some(p), uuid),
            IocValue::Ip(ip) => self.has(self.ips.get(&canonical_ip(*ip)), None, uuid),
            IocValue::Md5(h) => self.has(self.md5.get(h), None, uuid),
            IocValue::Sha1(h) => self.has(self.sha1.get(h), None, uuid),
            IocValue::Sha256(h) => self.has(self.sha256.get(h), None, uuid),
            IocValue::Sha512(h) => self.has(self.sha512.get(h), None, uuid),
        }
    }

    /// Adds one IoC; false (and nothing added) when the set already holds
    /// one with the same value and uuid.
    pub fn insert(&mut self, ioc: Ioc) -> bool {
        if self.contains(&ioc.value, ioc.uuid) {
            return false;
        }
        let id = self.entries.len() as u32;
        let check = match &ioc.value {
            IocValue::Domain(d) => self.check_of(d.as_str()),
            IocValue::Path(p) => self.check_of(p),
            _ => 0,
        };
        let (shared, seed) = (&mut self.shared, &self.seed);
        let text = match ioc.value {
            IocValue::Domain(d) => {
                add_text(&mut self.domains, shared, seed.hash_one(d.as_str()), check, id);
                self.domain_labels |= 1u128 << label_count(d.as_str()).min(127);
                d.as_str().into()
            }
            IocValue::Path(p) => {
                add_text(&mut self.paths, shared, seed.hash_one(&*p), check, id);
                p
            }
            IocValue::Ip(ip) => {
                add(&mut self.ips, shared, canonical_ip(ip), id);
                ioc.text
            }
            IocValue::Md5(h) => {
                add(&mut self.md5, shared, h, id);
                ioc.text
            }
            IocValue::Sha1(h) => {
                add(&mut self.sha1, shared, h, id);
                ioc.text
            }
            IocValue::Sha256(h) => {
                add(&mut self.sha256, shared, h, id);
                ioc.text
            }
            IocValue::Sha512(h) => {
                add(&mut self.sha512, shared, h, id);
                ioc.text
            }
        };
        let source = ioc.source.and_then(|s| self.intern(s));
        self.entries.push(Entry { text, severity: ioc.severity, source, uuid: ioc.uuid });
        true
    }

    fn intern(&mut self, source: Box<str>) -> Option<u16> {
        if let Some(&id) = self.source_ids.get(&source) {
            return Some(id);
        }
        let id = u16::try_from(self.sources.len()).ok()?;
        self.sources.push(source.clone());
        self.source_ids.insert(source, id);
        Some(id)
    }

    /// Number of IoCs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no IoC is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many distinct values of each kind.
    pub fn counts_by_kind(&self) -> [(&'static str, usize); 7] {
        [
            ("domain", self.domains.len()),
            ("ip", self.ips.len()),
            ("md5", self.md5.len()),
            ("sha1", self.sha1.len()),
            ("sha256", self.sha256.len()),
            ("sha512", self.sha512.len()),
            ("path", self.paths.len()),
        ]
    }

    /// Value, severity, source and uuid of entry `id` (as passed to `lookup`'s callback).
    pub fn entry(&self, id: u32) -> Option<(&str, u8, Option<&str>, Option<uuid::Uuid>)> {
        let e = self.entries.get(id as usize)?;
        Some((&e.text, e.severity, e.source.map(|s| &*self.sources[s as usize]), e.uuid))
    }

    fn ids<'a>(&'a self, ids: Option<&'a Ids>) -> &'a [u32] {
        match ids {
            None => &[],
            Some(Ids(id)) if id & SHARED != 0 => &self.shared[(id & !SHARED) as usize],
            Some(Ids(id)) => std::slice::from_ref(id),
        }
    }

    /// Entries of a domain or path map whose text is exactly `key`.
    fn text_hits(&self, map: &StrMap, key: &str, hit: &mut impl FnMut(u32)) {
        let Some((ids, check)) = map.get(&self.seed.hash_one(key)) else { return };
        if *check != VERIFY_TEXT {
            if *check == self.check_of(key) {
                self.ids(Some(ids)).iter().for_each(|&id| hit(id));
            }
            return;
        }
        for &id in self.ids(Some(ids)) {
            if *self.entries[id as usize].text == *key {
                hit(id);
            }
        }
    }

    /// The entries whose value matches `obs` (a domain also matches through
    /// its parents). Allocates nothing.
    pub fn lookup(&self, obs: Observable<'_>, mut hit: impl FnMut(u32)) {
        let mut each = |ids: Option<&Ids>| {
            for &id in self.ids(ids) {
                hit(id);
            }
        };
        match obs {
            Observable::Path(p) => {
                if !self.paths.is_empty() && !p.is_empty() {
                    self.text_hits(&self.paths, p, &mut hit)
                }
            }
            Observable::Ip(ip) => each(self.ips.get(&canonical_ip(ip))),
            Observable::Md5(h) => each(self.md5.get(h)),
            Observable::Sha1(h) => each(self.sha1.get(h)),
            Observable::Sha256(h) => each(self.sha256.get(h)),
            Observable::Sha512(h) => each(self.sha512.get(h)),
            Observable::Domain(name) => {
                if self.domains.is_empty() {
                    return;
                }
                let name = name.strip_suffix('.').unwrap_or(name);
                if name.is_empty() || name.len() > MAX_DOMAIN_LEN {
                    return;
                }
                let mut buf = [0u8; MAX_DOMAIN_LEN];
                let lower = &mut buf[..name.len()];
                lower.copy_from_slice(name.as_bytes());
                lower.make_ascii_lowercase();
                // ASCII lowercasing keeps UTF-8 valid
                let Ok(lower) = std::str::from_utf8(lower) else { return };
                let mut rest = lower;
                let mut labels = label_count(rest);
                loop {
                    if self.domain_labels & (1u128 << labels.min(127)) != 0 {
                        self.text_hits(&self.domains, rest, &mut hit);
                    }
                    match rest.find('.') {
                        Some(dot) => rest = &rest[dot + 1..],
                        None => break,
                    }
                    labels -= 1;
                }
            }
        }
    }

    /// Checks every typed value of `item`; `None` when nothing matched.
    pub fn scan(&self, item: &(impl Observables + ?Sized)) -> Option<Detection> {
        if self.entries.is_empty() {
            return None;
        }
        let mut hits: Vec<u32> = Vec::new();
        item.observables(&mut |obs| {
            self.lookup(obs, |id| {
                if !hits.contains(&id) {
                    hits.push(id)
                }
            })
        });
        if hits.is_empty() {
            return None;
        }
        let mut det = Detection::default();
        let mut severity = 0u32;
        for id in hits {
            let e = &self.entries[id as usize];
            severity += e.severity as u32;
            if !det.iocs.iter().any(|v| **v == *e.text) {
                det.iocs.push(e.text.to_string());
            }
        }
        det.severity = severity.min(MAX_SEVERITY as u32) as u8;
        Some(det)
    }
}

fn label_count(name: &str) -> usize {
    name.bytes().filter(|&b| b == b'.').count() + 1
}

/// IPv4-mapped IPv6 (::ffff:a.b.c.d) matches the IPv4 IoC.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ioc(v: &str, severity: u8) -> Ioc {
        Ioc { value: v.parse().unwrap(), text: v.into(), severity, uuid: None, source: Some("test".into()) }
    }

    fn set(iocs: &[(&str, u8)]) -> IocSet {
        let mut s = IocSet::new();
        for (v, sev) in iocs {
            s.insert(ioc(v, *sev));
        }
        s
    }

    struct Obs(Vec<Observable<'static>>);
    impl Observables for Obs {
        fn observables(&self, visit: &mut dyn FnMut(Observable<'_>)) {
            for o in &self.0 {
                visit(*o)
            }
        }
    }

    fn domain(s: &'static str) -> Obs {
        Obs(vec![Observable::Domain(s)])
    }

    #[test]
    fn domains_match_themselves_and_subdomains_only() {
        let s = set(&[("kunai.rocks", 4)]);
        for yes in ["kunai.rocks", "why.kunai.rocks", "WHY.Kunai.Rocks.", "a.b.c.kunai.rocks"] {
            let d = s.scan(&domain(yes)).unwrap_or_else(|| panic!("{yes} should match"));
            assert_eq!(d.iocs, vec!["kunai.rocks"]);
            assert_eq!(d.severity, 4);
        }
        for no in ["notkunai.rocks", "rocks", "kunai.rocks.evil", "", "."] {
            assert!(s.scan(&domain(no)).is_none(), "{no} should not match");
        }
    }

    #[test]
    fn a_slot_shared_by_two_texts_is_confirmed_on_the_text() {
        let mut s = set(&[("a.example", 3)]);
        // forge a 64-bit collision: a second entry, another text, the same key
        let key = s.seed.hash_one("a.example");
        let forged = s.entries.len() as u32;
        s.entries.push(Entry { text: "b.example".into(), severity: 9, source: None, uuid: None });
        let check = s.check_of("b.example");
        add_text(&mut s.domains, &mut s.shared, key, check, forged);
        assert_eq!(s.domains[&key].1, VERIFY_TEXT);
        let mut hits = Vec::new();
        s.lookup(Observable::Domain("www.a.example"), |id| hits.push(id));
        assert_eq!(hits, [0], "only the entry whose text matches");
    }

    #[test]
    fn severities_stack_and_cap() {
        let s = set(&[("kunai.rocks", 4), ("why.kunai.rocks", 5), ("127.0.66.80", 6)]);
        let o = Obs(vec![Observable::Domain("why.kunai.rocks"), Observable::Ip("127.0.66.80".parse().unwrap())]);
        let d = s.scan(&o).unwrap();
        assert_eq!(d.severity, 10);
        assert_eq!(d.iocs.len(), 3);
        assert_eq!(s.entry(2).unwrap(), ("127.0.66.80", 6, Some("test"), None));
        let d = s.scan(&domain("why.kunai.rocks")).unwrap();
        assert_eq!(d.severity, 9);
    }

    #[test]
    fn same_value_twice_counts_twice_listed_once() {
        let mut s = IocSet::new();
        for (i, sev) in [2, 3, 1].into_iter().enumerate() {
            // three IoCs (three uuids) on one value
            assert!(s.insert(Ioc { uuid: Some(uuid::Uuid::from_u128(i as u128)), ..ioc("/tmp/x", sev) }));
        }
        let d = s.scan(&Obs(vec![Observable::Path("/tmp/x"), Observable::Path("/tmp/x")])).unwrap();
        assert_eq!(d.iocs, vec!["/tmp/x"]);
        assert_eq!(d.severity, 6, "each IoC once, even if the value is seen twice");
        assert!(s.scan(&Obs(vec![Observable::Path("/tmp/y")])).is_none());
    }

    #[test]
    fn the_same_ioc_twice_counts_once() {
        let uuid = Some(uuid::Uuid::from_u128(7));
        let mut s = IocSet::new();
        for v in ["/tmp/x", "kunai.rocks", "10.0.0.1", &"a".repeat(64)] {
            let ioc = Ioc { uuid, ..ioc(v, 4) };
            assert!(s.insert(ioc.clone()), "{v} first");
            assert!(!s.insert(ioc.clone()), "{v} again");
            assert!(s.insert(Ioc { uuid: None, ..ioc }), "{v} without a uuid is another IoC");
        }
        assert_eq!(s.len(), 8);
        let d = s.scan(&Obs(vec![Observable::Path("/tmp/x")])).unwrap();
        assert_eq!(d.severity, 8, "two IoCs (uuid and none), not three");
    }

    #[test]
    fn digests_and_mapped_ips() {
        let md5 = "D41D8CD98F00B204E9800998ECF8427E";
        let s = set(&[(md5, 3), ("10.1.2.3", 1)]);
        let h: Md5 = md5.to_lowercase().parse().unwrap();
        let h: &'static Md5 = Box::leak(Box::new(h));
        assert_eq!(s.scan(&Obs(vec![Observable::Md5(h)])).unwrap().iocs, vec![md5]);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(s.scan(&Obs(vec![Observable::Ip(mapped)])).is_some());
        assert!(s.scan(&Obs(vec![Observable::Path("/nope")])).is_none());
    }

    proptest! {
        #[test]
        fn any_subdomain_matches(labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..5)) {
            let s = set(&[("kunai.rocks", 1)]);
            let name = format!("{}.KUNAI.rocks", labels.join("."));
            let name: &'static str = Box::leak(name.into_boxed_str());
            prop_assert!(s.scan(&domain(name)).is_some());
        }

        #[test]
        fn digests_match_in_any_case(bytes in proptest::array::uniform32(any::<u8>()), upper in any::<bool>()) {
            let hex = Sha256(bytes).to_string();
            let text = if upper { hex.to_uppercase() } else { hex };
            let s = set(&[(text.as_str(), 2)]);
            let h: &'static Sha256 = Box::leak(Box::new(Sha256(bytes)));
            prop_assert!(s.scan(&Obs(vec![Observable::Sha256(h)])).is_some());
        }

        #[test]
        fn arbitrary_names_never_panic(name in "\\PC{0,300}") {
            let s = set(&[("kunai.rocks", 1), ("/tmp/x", 1)]);
            let name: &'static str = Box::leak(name.into_boxed_str());
            let _ = s.scan(&Obs(vec![Observable::Domain(name), Observable::Path(name)]));
        }
    }
}

//! Documents for the search test and the search measurement: bodies drawn from a skewed
//! vocabulary by a seeded generator (the same corpus every run), with planted words and
//! custom fields of known frequency.

#![allow(dead_code, clippy::panic)]

/// In 1 document in 100: the selective full-text query.
pub const RARE_WORD: &str = "zeppelin";
/// In 1 document in 10.
pub const COMMON_WORD: &str = "harbor";
/// The custom field the attribute queries use: `customer` is `c0` ... `c99`, each in 1
/// document in 100.
pub const CUSTOMER_KEY: &str = "customer";
/// The four values of `status`, each in 1 document in 4.
pub const STATUSES: [&str; 4] = ["open", "closed", "draft", "archived"];

/// A seeded generator (splitmix64): deterministic, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A generated document.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Custom fields.
    pub attributes: Vec<(String, String)>,
}

/// Document `n` (numbered from 0 within its org): its title, body of `words` words from a
/// vocabulary of `vocabulary` (`w0` most frequent), the planted words, and its custom fields.
pub fn document(rng: &mut Rng, n: usize, words: usize, vocabulary: usize) -> Doc {
    let mut body: Vec<String> = (0..words)
        .map(|_| {
            let u = rng.unit();
            format!("w{}", (vocabulary as f64 * u * u * u) as usize)
        })
        .collect();
    if n % 100 == 7 {
        body.push(RARE_WORD.to_owned());
    }
    if n % 10 == 3 {
        body.push(COMMON_WORD.to_owned());
    }
    let attributes = vec![
        ("status".to_owned(), STATUSES[n % 4].to_owned()),
        (CUSTOMER_KEY.to_owned(), format!("c{}", n % 100)),
    ];
    Doc {
        title: format!("Document {n}"),
        body: body.join(" "),
        attributes,
    }
}

/// Creates `per_org` documents in each org of `orgs` through the application's own path
/// ([`create_documents`](saas_patterns::search::create_documents), terms included), `batch`
/// per scoped transaction, the orgs taking turns so that their rows interleave on disk as they
/// do in a live table. Returns each org's document ids, document `n` at index `n`.
pub fn load(
    pool: &tenant_core::TenantPool,
    orgs: &[tenant_core::OrgId],
    per_org: usize,
    words: usize,
    vocabulary: usize,
    batch: usize,
) -> Vec<Vec<uuid::Uuid>> {
    let mut rngs: Vec<Rng> = (0..orgs.len()).map(|i| Rng::new(i as u64 + 1)).collect();
    let mut ids: Vec<Vec<uuid::Uuid>> = vec![Vec::new(); orgs.len()];
    let mut start = 0;
    while start < per_org {
        let end = (start + batch).min(per_org);
        for (i, &org) in orgs.iter().enumerate() {
            let docs: Vec<Doc> = (start..end)
                .map(|n| document(&mut rngs[i], n, words, vocabulary))
                .collect();
            let pairs: Vec<Vec<(&str, &str)>> = docs
                .iter()
                .map(|d| {
                    d.attributes
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect()
                })
                .collect();
            let new: Vec<saas_patterns::search::NewDocument<'_>> = docs
                .iter()
                .zip(&pairs)
                .map(|(d, attributes)| saas_patterns::search::NewDocument {
                    title: &d.title,
                    body: &d.body,
                    attributes,
                })
                .collect();
            let created = pool
                .with_org(org, |s| saas_patterns::search::create_documents(s, &new))
                .unwrap_or_else(|e| panic!("loading documents: {e}"));
            ids[i].extend(created);
        }
        start = end;
    }
    ids
}

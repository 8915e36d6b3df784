//! The read path end to end on the local stack: the study list with every
//! filter, its order and paging, signed cursors, tenant isolation, shares
//! and grants, DICOMweb search, metadata and retrieve, and the audit
//! trail. Studies are seeded straight into the archive table in the
//! layout of docs/data-model.md, so a thousand of them cost seconds.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use pacs_local::{Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A running stack, an HTTP client and the platform-admin key.
pub struct Env {
    pub stack: Stack,
    pub http: reqwest::Client,
    pub base: String,
    _dir: tempfile::TempDir,
}

/// A registered hospital with keys of every role.
#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    pub agent: String,
    pub admin: String,
    pub reader: String,
}

/// A study as seeded, for computing what the API must answer.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub hospital: String,
    pub uid: String,
    pub date: String,
    pub time: String,
    pub patient_id: String,
    pub patient_name: String,
    pub accession: String,
    pub modalities: Vec<String>,
}

impl Seeded {
    fn sort_key(&self) -> String {
        format!("{}{}#{}", self.date, self.time, self.uid)
    }
}

const NAMES: [&str; 5] = [
    "DOE^JOHN",
    "DOE^JANE",
    "SMITH^ANNA",
    "Müller^Hans",
    "O'NEIL^KATE",
];

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let stack = Stack::start(StackOptions::new(dir.path()))
            .await
            .expect("stack starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = stack.api_url();
        Env {
            stack,
            http,
            base,
            _dir: dir,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.parse().unwrap(), &url);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(key), None).await
    }

    pub async fn register(&self, name: &str) -> Tenant {
        let admin = self.stack.platform_admin_key().to_owned();
        let body = json!({
            "name": name, "contactEmail": "it@example.org", "contactPhone": "+41 44 123 45 67",
            "address": "1 Main St", "plan": "enterprise"
        });
        let (st, v) = self
            .call("POST", "/api/hospitals/register", Some(&admin), Some(body))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let id = v["data"]["hospitalId"].as_str().unwrap().to_owned();
        let agent = v["data"]["apiKey"].as_str().unwrap().to_owned();
        let mut keys = HashMap::new();
        for role in ["admin", "reader"] {
            let path = format!("/api/hospitals/{id}/keys");
            let (st, v) = self
                .call(
                    "POST",
                    &path,
                    Some(&admin),
                    Some(json!({"role": role, "label": role})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            keys.insert(role, v["data"]["apiKey"].as_str().unwrap().to_owned());
        }
        Tenant {
            id,
            agent,
            admin: keys["admin"].clone(),
            reader: keys["reader"].clone(),
        }
    }

    async fn batch_put(&self, items: Vec<HashMap<String, AttributeValue>>) {
        let ctx = self.stack.context();
        for chunk in items.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(i.clone()))
                                .build()
                                .unwrap(),
                        )
                        .build()
                })
                .collect();
            while !pending.is_empty() {
                let out = ctx
                    .clients
                    .dynamodb
                    .batch_write_item()
                    .request_items(&ctx.settings.archive_table, pending)
                    .send()
                    .await
                    .expect("batch write");
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&ctx.settings.archive_table))
                    .unwrap_or_default();
            }
        }
    }

    /// Seeds `count` studies of `hospital`, numbered from `first`, with a
    /// spread of dates (several studies share a date and time across
    /// hospitals, to exercise the merge's tie-break).
    pub async fn seed_studies(&self, hospital: &str, first: usize, count: usize) -> Vec<Seeded> {
        let tag = &hospital[5..9];
        let mut seeded = Vec::new();
        let mut items = Vec::new();
        for i in first..first + count {
            let day =
                time::macros::date!(2020 - 01 - 01) + time::Duration::days((i * 7 % 1500) as i64);
            let s = Seeded {
                hospital: hospital.to_owned(),
                uid: format!(
                    "1.2.826.0.1.3680043.10.{}.{i}",
                    u32::from_str_radix(tag, 16).unwrap()
                ),
                date: format!(
                    "{:04}{:02}{:02}",
                    day.year(),
                    u8::from(day.month()),
                    day.day()
                ),
                time: format!("{:02}{:02}00", (i / 3) % 24, i % 60),
                patient_id: format!("P{:03}", i % 50),
                patient_name: NAMES[i % NAMES.len()].to_owned(),
                accession: format!("ACC{i}"),
                modalities: match i % 3 {
                    0 => vec!["CT".into()],
                    1 => vec!["MR".into()],
                    _ => vec!["CT".into(), "SR".into()],
                },
            };
            items.push(study_item(&s));
            seeded.push(s);
        }
        self.batch_put(items).await;
        seeded
    }

    /// Seeds one series with `n` instances under `study`, with the DICOM
    /// JSON metadata the indexer stores, and returns the instance UIDs.
    pub async fn seed_series(&self, s: &Seeded, series: &str, n: usize) -> Vec<String> {
        let s_pk = format!("{}#{}", s.hospital, s.uid);
        let sv = |v: &str| AttributeValue::S(v.to_owned());
        let mut items = Vec::new();
        let mut series_item = HashMap::from([
            ("pk".to_owned(), sv(&s_pk)),
            ("sk".to_owned(), sv(&format!("SERIES#{series}"))),
            ("hospitalId".to_owned(), sv(&s.hospital)),
            ("studyInstanceUid".to_owned(), sv(&s.uid)),
            ("seriesInstanceUid".to_owned(), sv(series)),
            ("modality".to_owned(), sv(&s.modalities[0])),
            ("seriesNumber".to_owned(), AttributeValue::N("1".into())),
            ("seriesDescription".to_owned(), sv("AXIAL")),
            (
                "numberOfInstances".to_owned(),
                AttributeValue::N(n.to_string()),
            ),
            (
                "sizeBytes".to_owned(),
                AttributeValue::N((n * 1000).to_string()),
            ),
        ]);
        series_item.insert("createdAt".into(), sv("2024-01-01T00:00:00Z"));
        items.push(series_item);
        let mut sops = Vec::new();
        for k in 1..=n {
            let sop = format!("{series}.{k}");
            let metadata = json!({
                "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                "00080018": {"vr": "UI", "Value": [sop]},
                "0020000D": {"vr": "UI", "Value": [s.uid]},
                "0020000E": {"vr": "UI", "Value": [series]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": s.patient_name}]},
                "00200013": {"vr": "IS", "Value": [k]},
            });
            items.push(HashMap::from([
                ("pk".to_owned(), sv(&s_pk)),
                ("sk".to_owned(), sv(&format!("INSTANCE#{series}#{sop}"))),
                ("hospitalId".to_owned(), sv(&s.hospital)),
                ("studyInstanceUid".to_owned(), sv(&s.uid)),
                ("seriesInstanceUid".to_owned(), sv(series)),
                ("sopInstanceUid".to_owned(), sv(&sop)),
                ("sopClassUid".to_owned(), sv("1.2.840.10008.5.1.4.1.1.2")),
                (
                    "instanceNumber".to_owned(),
                    AttributeValue::N(k.to_string()),
                ),
                ("transferSyntaxUid".to_owned(), sv("1.2.840.10008.1.2.1")),
                ("rows".to_owned(), AttributeValue::N("2".into())),
                ("columns".to_owned(), AttributeValue::N("2".into())),
                (
                    "s3Key".to_owned(),
                    sv(&format!("dicom/{}/seed-{sop}.dcm", s.hospital)),
                ),
                ("sizeBytes".to_owned(), AttributeValue::N("1000".into())),
                ("metadata".to_owned(), sv(&metadata.to_string())),
            ]));
            sops.push(sop);
        }
        self.batch_put(items).await;
        sops
    }
}

fn study_item(s: &Seeded) -> HashMap<String, AttributeValue> {
    let sv = |v: &str| AttributeValue::S(v.to_owned());
    HashMap::from([
        ("pk".to_owned(), sv(&format!("{}#{}", s.hospital, s.uid))),
        ("sk".to_owned(), sv("STUDY")),
        ("gsi1pk".to_owned(), sv(&s.hospital)),
        ("gsi1sk".to_owned(), sv(&s.sort_key())),
        ("hospitalId".to_owned(), sv(&s.hospital)),
        ("studyInstanceUid".to_owned(), sv(&s.uid)),
        ("patientId".to_owned(), sv(&s.patient_id)),
        ("patientName".to_owned(), sv(&s.patient_name)),
        (
            "patientNameLower".to_owned(),
            sv(&s.patient_name.to_lowercase()),
        ),
        ("patientBirthDate".to_owned(), sv("19700101")),
        ("patientSex".to_owned(), sv("F")),
        ("studyDate".to_owned(), sv(&s.date)),
        ("studyTime".to_owned(), sv(&s.time)),
        ("accessionNumber".to_owned(), sv(&s.accession)),
        ("studyDescription".to_owned(), sv("CHEST")),
        (
            "modalities".to_owned(),
            AttributeValue::Ss(s.modalities.clone()),
        ),
        ("numberOfSeries".to_owned(), AttributeValue::N("1".into())),
        (
            "numberOfInstances".to_owned(),
            AttributeValue::N("3".into()),
        ),
        ("sizeBytes".to_owned(), AttributeValue::N("3000".into())),
        ("createdAt".to_owned(), sv("2024-01-01T00:00:00Z")),
        ("updatedAt".to_owned(), sv("2024-01-01T00:00:00Z")),
    ])
}

/// What the list must return for `studies` under `keep`, in order.
fn expected(studies: &[Seeded], keep: impl Fn(&Seeded) -> bool) -> Vec<(String, String)> {
    let mut v: Vec<&Seeded> = studies.iter().filter(|s| keep(s)).collect();
    v.sort_by(|a, b| (b.sort_key(), &b.hospital).cmp(&(a.sort_key(), &a.hospital)));
    v.into_iter()
        .map(|s| (s.hospital.clone(), s.uid.clone()))
        .collect()
}

fn ids(page: &Value) -> Vec<(String, String)> {
    page["data"]["studies"]
        .as_array()
        .expect("studies array")
        .iter()
        .map(|s| {
            (
                s["hospitalId"].as_str().unwrap().to_owned(),
                s["studyInstanceUid"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every study of a list, page by page; panics on a repeat.
async fn all_pages(env: &Env, key: &str, query: &str, limit: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/studies?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = env.get(&path, key).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        let page = ids(&v);
        assert!(page.len() <= limit);
        for id in page {
            assert!(seen.insert(id.clone()), "repeated {id:?}");
            out.push(id);
        }
        match v["data"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_list_filters_orders_and_pages_across_hospitals() {
    let env = Env::start().await;
    let a = env.register("Alpha General").await;
    let b = env.register("Beta Clinic").await;
    let c = env.register("Gamma Imaging").await;
    let mut sa = env.seed_studies(&a.id, 0, 1100).await;
    let sb = env.seed_studies(&b.id, 0, 150).await;
    let sc = env.seed_studies(&c.id, 0, 60).await;

    // Beta grants Alpha; an Alpha user who may read Beta sees both.
    let (st, v) = env
        .call(
            "POST",
            &format!("/api/hospitals/{}/grants", b.id),
            Some(&b.admin),
            Some(json!({"hospitalId": a.id})),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let body = json!({"username": "dr.grey", "email": "grey@example.org", "roles": ["reader"],
        "accessibleHospitals": [b.id]});
    let (st, v) = env
        .call(
            "POST",
            &format!("/api/hospitals/{}/users", a.id),
            Some(&a.admin),
            Some(body),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let user = v["data"]["apiKey"].as_str().unwrap().to_owned();

    // Own studies: more than 1,000, paged at the maximum and at 100.
    let want_a = expected(&sa, |_| true);
    assert_eq!(all_pages(&env, &a.reader, "", 1000).await, want_a);
    assert_eq!(all_pages(&env, &a.reader, "", 100).await, want_a);

    // The user with a grant: both hospitals, merged newest first.
    let mut ab = sa.clone();
    ab.extend(sb.iter().cloned());
    let want_ab = expected(&ab, |_| true);
    assert_eq!(all_pages(&env, &user, "", 333).await, want_ab);
    let (_, first) = env.get("/api/studies", &user).await;
    assert_eq!(ids(&first).len(), 100, "default limit");
    let s0 = &first["data"]["studies"][0];
    assert!(
        s0["numberOfInstances"].as_u64() == Some(3) && s0["sizeBytes"].as_u64() == Some(3000),
        "{s0}"
    );
    for f in [
        "patientBirthDate",
        "studyDescription",
        "modalities",
        "sharedWith",
        "createdAt",
    ] {
        assert!(s0.get(f).is_some(), "field {f} missing: {s0}");
    }
    // The user may restrict to one readable hospital; Gamma is not one.
    let only_b = all_pages(&env, &user, &format!("&hospitalId={}", b.id), 1000).await;
    assert_eq!(only_b, expected(&sb, |_| true));
    assert!(
        all_pages(&env, &user, &format!("&hospitalId={}", c.id), 1000)
            .await
            .is_empty()
    );
    // Alpha's plain reader key has no grant.
    assert!(
        all_pages(&env, &a.reader, &format!("&hospitalId={}", b.id), 1000)
            .await
            .is_empty()
    );

    // Every filter, against the same computation on the seeded list.
    let cases: Vec<(&str, Box<dyn Fn(&Seeded) -> bool>)> = vec![
        (
            "&patientId=P007",
            Box::new(|s: &Seeded| s.patient_id == "P007"),
        ),
        (
            "&patientName=doe",
            Box::new(|s: &Seeded| s.patient_name.to_lowercase().starts_with("doe")),
        ),
        (
            "&patientName=DOE%5EJA",
            Box::new(|s: &Seeded| s.patient_name == "DOE^JANE"),
        ),
        (
            "&patientName=m%C3%BCller",
            Box::new(|s: &Seeded| s.patient_name == "Müller^Hans"),
        ),
        (
            "&modality=sr",
            Box::new(|s: &Seeded| s.modalities.contains(&"SR".to_string())),
        ),
        (
            "&from=20210301",
            Box::new(|s: &Seeded| s.date.as_str() >= "20210301"),
        ),
        (
            "&to=20200615",
            Box::new(|s: &Seeded| s.date.as_str() <= "20200615"),
        ),
        (
            "&from=20210101&to=20210131",
            Box::new(|s: &Seeded| ("20210101".."20210132").contains(&s.date.as_str())),
        ),
        (
            "&accessionNumber=ACC42",
            Box::new(|s: &Seeded| s.accession == "ACC42"),
        ),
        (
            "&modality=MR&from=20200101&to=20211231&patientName=s",
            Box::new(|s: &Seeded| {
                s.modalities.contains(&"MR".to_string())
                    && s.date.as_str() <= "20211231"
                    && s.patient_name.to_lowercase().starts_with('s')
            }),
        ),
    ];
    for (query, keep) in &cases {
        let got = all_pages(&env, &user, query, 250).await;
        assert_eq!(got, expected(&ab, keep), "filter {query}");
        assert!(
            !got.is_empty() || *query == "&accessionNumber=ACC42",
            "filter {query} matched nothing"
        );
    }

    let (st, _) = env.get(&format!("/api/studies/{}", sb[0].uid), &user).await;
    assert_eq!(st, StatusCode::OK, "granted study detail");
    let (st, _) = env
        .get(&format!("/api/studies/{}", sb[0].uid), &a.reader)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A revoked grant stops at once; the user's old cursor no longer opens.
    let (_, p1) = env.get("/api/studies?limit=10", &user).await;
    let stale = p1["data"]["nextCursor"].as_str().unwrap().to_owned();
    let grant = format!("/api/hospitals/{}/grants/{}", b.id, a.id);
    let (st, v) = env.call("DELETE", &grant, Some(&b.admin), None).await;
    assert!(st.is_success(), "{v}");
    assert_eq!(
        all_pages(&env, &user, "", 1000).await,
        expected(&sa, |_| true)
    );
    let (st, _) = env.get(&format!("/api/studies/{}", sb[0].uid), &user).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = env
        .get(&format!("/dicomweb/studies/{}/series", sb[0].uid), &user)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = env
        .get(&format!("/api/studies?limit=10&cursor={stale}"), &user)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // A study added between pages shows up in a new listing, not as a
    // repeat: the cursor is a position, not a snapshot.
    sa.extend(env.seed_studies(&a.id, 5000, 1).await);
    assert_eq!(
        all_pages(&env, &a.reader, "", 1000).await,
        expected(&sa, |_| true)
    );

    // Bad input: 400 naming the parameter, never a 5xx.
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("from=2024-01-01", "from"),
        ("to=20241301", "to"),
        ("from=20240201&to=20240101", "from"),
        ("hospitalId=hosp_x", "hospitalId"),
        ("sort=asc&foo=1", "foo, sort"),
        ("cursor=garbage", "cursor"),
    ] {
        let (st, v) = env.get(&format!("/api/studies?{query}"), &a.reader).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(names),
            "{query}: {v}"
        );
    }

    // Cursors cannot be forged, moved to another tenant or other filters.
    let (_, p1) = env
        .get("/api/studies?limit=10&modality=CT", &a.reader)
        .await;
    let cursor = p1["data"]["nextCursor"].as_str().unwrap().to_owned();
    let (st, _) = env
        .get(
            &format!("/api/studies?limit=10&modality=CT&cursor={cursor}"),
            &a.reader,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = env
        .get(
            &format!("/api/studies?limit=10&modality=CT&cursor={cursor}"),
            &b.reader,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "foreign cursor: {v}");
    let (st, _) = env
        .get(
            &format!("/api/studies?limit=10&modality=MR&cursor={cursor}"),
            &a.reader,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "cursor of other filters");
    let (body, tag) = cursor.split_once('.').unwrap();
    let forged_body = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut state: Value = serde_json::from_slice(&engine.decode(body).unwrap()).unwrap();
        state["h"] = json!(b.id);
        engine.encode(serde_json::to_vec(&state).unwrap())
    };
    let (st, v) = env
        .get(
            &format!("/api/studies?limit=10&modality=CT&cursor={forged_body}.{tag}"),
            &a.reader,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "forged cursor: {v}");
    assert!(v["message"].as_str().unwrap().contains("cursor"));
    let _ = sc;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_roles_and_the_platform_admin_read_nothing() {
    let env = Env::start().await;
    let a = env.register("Alpha General").await;
    let b = env.register("Beta Clinic").await;
    let sa = env.seed_studies(&a.id, 0, 5).await;
    let sb = env.seed_studies(&b.id, 0, 5).await;
    let uid = &sa[0].uid;
    env.seed_series(&sa[0], &format!("{uid}.1"), 2).await;
    let series = format!("{uid}.1");
    let sop = format!("{series}.1");
    let admin = env.stack.platform_admin_key().to_owned();

    // Alpha reads its own study, detail and download.
    let (st, v) = env.get(&format!("/api/studies/{uid}"), &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["series"][0]["numberOfInstances"], 2);
    assert_eq!(v["data"]["access"], "own");
    let (st, v) = env
        .get(&format!("/api/studies/{uid}/download"), &a.admin)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let inst = &v["data"]["instances"][0];
    assert!(
        inst["url"].as_str().unwrap().contains("X-Amz-Signature"),
        "{inst}"
    );
    assert!(inst["url"].as_str().unwrap().contains(&a.id));
    assert_eq!(v["data"]["instances"].as_array().unwrap().len(), 2);

    // Beta sees none of it, anywhere, as a 404 (never 403).
    let paths = [
        format!("/api/studies/{uid}"),
        format!("/api/studies/{uid}?hospitalId={}", a.id),
        format!("/api/studies/{uid}/download"),
        format!("/api/studies/{uid}/download?hospitalId={}", a.id),
        format!("/dicomweb/studies/{uid}/series"),
        format!("/dicomweb/studies/{uid}/metadata"),
        format!("/dicomweb/studies/{uid}/series/{series}/instances"),
        format!("/dicomweb/studies/{uid}/series/{series}/instances/{sop}"),
        format!("/dicomweb/studies/{uid}/series/{series}/instances/{sop}/metadata"),
    ];
    for path in &paths {
        for key in [&b.reader, &b.admin] {
            let (st, v) = env.get(path, key).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
        }
    }
    let listed = all_pages(&env, &b.reader, "", 1000).await;
    assert_eq!(listed, expected(&sb, |_| true));
    let listed = all_pages(&env, &b.reader, &format!("&hospitalId={}", a.id), 1000).await;
    assert!(listed.is_empty());
    let (st, v) = env
        .get(
            &format!("/dicomweb/studies?StudyInstanceUID={uid}"),
            &b.reader,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!([]));

    // Agents and the platform admin read no patient data; no key is 401.
    for path in paths
        .iter()
        .take(3)
        .chain([&"/api/studies".to_owned(), &"/dicomweb/studies".to_owned()])
    {
        let (st, _) = env.get(path, &a.agent).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "agent on {path}");
        let (st, _) = env.get(path, &admin).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "platform admin on {path}");
        let (st, _) = env.call("GET", path, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "no key on {path}");
    }

    // Shares: only the owner's admin, of its own study.
    let share = json!({"hospitalId": b.id, "accessLevel": "read"});
    let shares = format!("/api/studies/{uid}/shares");
    for key in [&a.reader, &a.agent, &admin] {
        let (st, _) = env
            .call("POST", &shares, Some(key), Some(share.clone()))
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let foreign = format!("/api/studies/{}/shares", sb[0].uid);
    let (st, _) = env
        .call(
            "POST",
            &foreign,
            Some(&a.admin),
            Some(json!({"hospitalId": b.id})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "sharing another hospital's study"
    );
    let (st, _) = env
        .call(
            "DELETE",
            &format!("/api/studies/{}/shares/{}", sb[0].uid, a.id),
            Some(&a.admin),
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "revoking another hospital's share"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_appear_at_once_and_stop_at_once() {
    let env = Env::start().await;
    let a = env.register("Alpha General").await;
    let c = env.register("Gamma Imaging").await;
    let sa = env.seed_studies(&a.id, 0, 20).await;
    let sc = env.seed_studies(&c.id, 0, 3).await;
    let target = &sa[7];
    let uid = &target.uid;
    env.seed_series(target, &format!("{uid}.1"), 1).await;
    let shares = format!("/api/studies/{uid}/shares");

    // Input checks.
    for (body, code) in [
        (
            json!({"hospitalId": c.id, "accessLevel": "write"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"hospitalId": a.id}), StatusCode::BAD_REQUEST),
        (
            json!({"hospitalId": "hosp_00000000000000ff"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"hospitalId": c.id, "expiresAt": "tomorrow"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"hospitalId": c.id, "expiresAt": "2000-01-01T00:00:00Z"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"hospitalId": c.id, "colour": "red"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (st, v) = env
            .call("POST", &shares, Some(&a.admin), Some(body.clone()))
            .await;
        assert_eq!(st, code, "{body}: {v}");
    }
    let (_, v) = env
        .call(
            "POST",
            &shares,
            Some(&a.admin),
            Some(json!({"hospitalId": c.id, "accessLevel": "write"})),
        )
        .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("only read is implemented")
    );

    // Share: Gamma sees it in its list, detail, download and DICOMweb.
    let (st, v) = env
        .call(
            "POST",
            &shares,
            Some(&a.admin),
            Some(json!({"hospitalId": c.id, "accessLevel": "read"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let mut visible = sc.clone();
    visible.push(target.clone());
    assert_eq!(
        all_pages(&env, &c.reader, "", 1000).await,
        expected(&visible, |_| true)
    );
    let (st, v) = env.get(&format!("/api/studies/{uid}"), &c.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["access"], "shared");
    assert_eq!(v["data"]["hospitalId"], a.id);
    assert_eq!(
        v["data"]["sharedWith"],
        json!([c.id]),
        "a grantee sees only itself"
    );
    let (st, _) = env
        .get(&format!("/api/studies/{uid}/download"), &c.reader)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = env.get("/dicomweb/studies", &c.reader).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v.to_string().contains(uid.as_str()));
    let (st, _) = env
        .get(&format!("/dicomweb/studies/{uid}/series"), &c.reader)
        .await;
    assert_eq!(st, StatusCode::OK);
    // The owner's study lists the grantee; other studies stay hidden.
    let (_, v) = env.get(&format!("/api/studies/{uid}"), &a.reader).await;
    assert_eq!(v["data"]["sharedWith"], json!([c.id]));
    let (st, _) = env
        .get(&format!("/api/studies/{}", sa[8].uid), &c.reader)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Filters apply to shared studies too.
    let only_a = all_pages(&env, &c.reader, &format!("&hospitalId={}", a.id), 1000).await;
    assert_eq!(only_a, vec![(a.id.clone(), uid.clone())]);
    let none = all_pages(&env, &c.reader, "&accessionNumber=NOPE", 1000).await;
    assert!(none.is_empty());

    // Revoke: gone at once, everywhere; a second revoke is a 404.
    let revoke = format!("/api/studies/{uid}/shares/{}", c.id);
    let (st, v) = env.call("DELETE", &revoke, Some(&a.admin), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        all_pages(&env, &c.reader, "", 1000).await,
        expected(&sc, |_| true)
    );
    let (st, _) = env.get(&format!("/api/studies/{uid}"), &c.reader).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = env
        .get(&format!("/dicomweb/studies/{uid}/metadata"), &c.reader)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = env.call("DELETE", &revoke, Some(&a.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = env.get(&format!("/api/studies/{uid}"), &a.reader).await;
    assert_eq!(v["data"]["sharedWith"], json!([]));

    // Expiry: a share that ends stops counting the moment it ends, before
    // the table's TTL removes it.
    let ends = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let ends = ends
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, v) = env
        .call(
            "POST",
            &shares,
            Some(&a.admin),
            Some(json!({"hospitalId": c.id, "expiresAt": ends})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = env.get(&format!("/api/studies/{uid}"), &c.reader).await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (st, _) = env.get(&format!("/api/studies/{uid}"), &c.reader).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "expired share still reads");
    assert_eq!(
        all_pages(&env, &c.reader, "", 1000).await,
        expected(&sc, |_| true)
    );

    // The same UID in two readable hospitals: 409 until one is named.
    let mut twin = target.clone();
    twin.hospital = c.id.clone();
    env.batch_put(vec![study_item(&twin)]).await;
    let (st, _) = env
        .call(
            "POST",
            &shares,
            Some(&a.admin),
            Some(json!({"hospitalId": c.id})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, v) = env.get(&format!("/api/studies/{uid}"), &c.reader).await;
    assert_eq!(v["data"]["hospitalId"], c.id, "own study comes first");
    let (_, v) = env
        .get(
            &format!("/api/studies/{uid}?hospitalId={}", a.id),
            &c.reader,
        )
        .await;
    assert_eq!(v["data"]["hospitalId"], a.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicomweb_search_metadata_retrieve_and_cors() {
    let env = Env::start().await;
    let a = env.register("Alpha General").await;
    let sa = env.seed_studies(&a.id, 0, 40).await;
    let target = &sa[3];
    let uid = &target.uid;
    let series = format!("{uid}.1");
    let sops = env.seed_series(target, &series, 3).await;

    // QIDO studies: matching keys by keyword and by tag.
    let q = |query: &str| format!("/dicomweb/studies?{query}");
    let (st, v) = env
        .get(
            &q(&format!(
                "0020000D={uid}&includefield=all&fuzzymatching=false"
            )),
            &a.reader,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let study = &v[0];
    assert_eq!(study["0020000D"]["Value"][0], json!(uid));
    assert_eq!(study["00100010"]["vr"], "PN");
    assert_eq!(
        study["00100010"]["Value"][0]["Alphabetic"],
        json!(target.patient_name)
    );
    assert_eq!(study["00201208"]["Value"][0], 3);
    let uids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["0020000D"]["Value"][0].as_str().unwrap().to_owned())
            .collect()
    };
    let order = |keep: &dyn Fn(&Seeded) -> bool| -> Vec<String> {
        expected(&sa, keep).into_iter().map(|(_, u)| u).collect()
    };
    let (_, v) = env.get(&q("PatientName=doe*"), &a.reader).await;
    assert_eq!(uids(&v), order(&|s| s.patient_name.starts_with("DOE")));
    let (_, v) = env.get(&q("PatientName=*e%5Ej?ne"), &a.reader).await;
    assert_eq!(uids(&v), order(&|s| s.patient_name == "DOE^JANE"));
    let (_, v) = env.get(&q("00100010=smith%5Eanna"), &a.reader).await;
    assert_eq!(uids(&v), order(&|s| s.patient_name == "SMITH^ANNA"));
    let (_, v) = env.get(&q("StudyDate=20200101-20200301"), &a.reader).await;
    assert_eq!(
        uids(&v),
        order(&|s| ("20200101".."20200302").contains(&s.date.as_str()))
    );
    let (_, v) = env
        .get(&q(&format!("StudyDate={}", target.date)), &a.reader)
        .await;
    assert_eq!(uids(&v), order(&|s| s.date == target.date));
    let (_, v) = env
        .get(&q("ModalitiesInStudy=SR&PatientID=P002"), &a.reader)
        .await;
    assert_eq!(
        uids(&v),
        order(&|s| s.patient_id == "P002" && s.modalities.len() == 2)
    );
    let (_, v) = env
        .get(
            &q(&format!("AccessionNumber={}", target.accession)),
            &a.reader,
        )
        .await;
    assert_eq!(uids(&v), vec![uid.clone()]);
    let (_, v) = env.get(&q("limit=5&offset=10"), &a.reader).await;
    assert_eq!(uids(&v), order(&|_| true)[10..15].to_vec());
    let (st, v) = env.get(&q("StudyDate=yesterday"), &a.reader).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("StudyDate"));
    let (st, _) = env.get(&q("limit=-1"), &a.reader).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // QIDO series and instances.
    let (st, v) = env
        .get(&format!("/dicomweb/studies/{uid}/series"), &a.reader)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v[0]["0020000E"]["Value"][0], json!(series));
    assert_eq!(v[0]["00201209"]["Value"][0], 3);
    let (_, v) = env
        .get(
            &format!("/dicomweb/studies/{uid}/series?Modality=XA"),
            &a.reader,
        )
        .await;
    assert_eq!(v, json!([]));
    for path in [
        format!("/dicomweb/studies/{uid}/series/{series}/instances"),
        format!("/dicomweb/studies/{uid}/instances"),
    ] {
        let (st, v) = env.get(&path, &a.reader).await;
        assert_eq!(st, StatusCode::OK);
        let got: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["00080018"]["Value"][0].as_str().unwrap())
            .collect();
        assert_eq!(got, sops.iter().map(String::as_str).collect::<Vec<_>>());
    }

    // WADO-RS metadata: what the indexer stored.
    let (st, v) = env
        .get(&format!("/dicomweb/studies/{uid}/metadata"), &a.reader)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(
        v[0]["00100010"]["Value"][0]["Alphabetic"],
        json!(target.patient_name)
    );
    let (_, v) = env
        .get(
            &format!("/dicomweb/studies/{uid}/series/{series}/metadata"),
            &a.reader,
        )
        .await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    let (_, v) = env
        .get(
            &format!(
                "/dicomweb/studies/{uid}/series/{series}/instances/{}/metadata",
                sops[1]
            ),
            &a.reader,
        )
        .await;
    assert_eq!(v[0]["00080018"]["Value"][0], json!(sops[1]));
    let (st, _) = env
        .get(
            &format!("/dicomweb/studies/{uid}/series/{series}/instances/1.2.3/metadata"),
            &a.reader,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Content type and CORS on answers and on a keyless preflight.
    let resp = env
        .http
        .get(format!("{}/dicomweb/studies", env.base))
        .header("x-api-key", &a.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/dicom+json");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let resp = env
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/dicomweb/studies", env.base),
        )
        .header("origin", "http://viewer.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-api-key")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(
        resp.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-api-key")
    );
    let resp = env
        .http
        .get(format!("{}/dicomweb/studies", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Retrieve: a bare application/dicom is redirected to a presigned URL.
    let path = format!(
        "{}/dicomweb/studies/{uid}/series/{series}/instances/{}",
        env.base, sops[0]
    );
    let resp = env
        .http
        .get(&path)
        .header("x-api-key", &a.reader)
        .header("accept", "application/dicom")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(location.contains("X-Amz-Signature") && location.contains(&a.id));
    let resp = env
        .http
        .get(&path)
        .header("x-api-key", &a.reader)
        .header("accept", "application/dicom+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_share_changes_are_audited_without_patient_data() {
    let env = Env::start().await;
    let a = env.register("Alpha General").await;
    let b = env.register("Beta Clinic").await;
    let sa = env.seed_studies(&a.id, 0, 30).await;
    let uid = &sa[0].uid;
    env.seed_series(&sa[0], &format!("{uid}.1"), 1).await;

    env.get("/api/studies?patientName=doe&patientId=P001", &a.reader)
        .await;
    env.get(&format!("/api/studies/{uid}"), &a.reader).await;
    env.get(&format!("/api/studies/{uid}/download"), &a.reader)
        .await;
    env.get(&format!("/dicomweb/studies/{uid}/metadata"), &a.reader)
        .await;
    env.call(
        "POST",
        &format!("/api/studies/{uid}/shares"),
        Some(&a.admin),
        Some(json!({"hospitalId": b.id})),
    )
    .await;
    env.get(&format!("/api/studies/{uid}"), &b.reader).await;
    env.call(
        "DELETE",
        &format!("/api/studies/{uid}/shares/{}", b.id),
        Some(&a.admin),
        None,
    )
    .await;
    env.get(&format!("/api/studies/{uid}"), &b.reader).await;
    env.get("/api/studies", &a.agent).await;
    env.call(
        "POST",
        &format!("/api/studies/{uid}/shares"),
        Some(&a.reader),
        Some(json!({"hospitalId": b.id})),
    )
    .await;

    let ctx = env.stack.context();
    let today = time::OffsetDateTime::now_utc().date();
    let page =
        pacs_shared::audit::list_audit(&ctx, &a.id.parse().unwrap(), today, today, 1000, None)
            .await
            .expect("audit lists");
    let actions: Vec<(&str, &str)> = page
        .records
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    for want in [
        ("studies.query", "success"),
        ("study.read", "success"),
        ("study.download", "success"),
        ("dicomweb.metadata", "success"),
        ("share.create", "success"),
        ("share.revoke", "success"),
        ("studies.request", "denied"),
        ("share.create", "denied"),
    ] {
        assert!(actions.contains(&want), "{want:?} missing from {actions:?}");
    }
    // Beta's read through the share is recorded for Alpha, the owner.
    assert!(
        page.records
            .iter()
            .any(|r| r.action == "study.read" && r.actor_hospital_id == b.id)
    );
    let query = page
        .records
        .iter()
        .find(|r| r.action == "studies.query")
        .unwrap();
    assert_eq!(
        query.filters,
        vec!["patientId".to_string(), "patientName".to_string()]
    );
    // Newest first.
    assert!(page.records.windows(2).all(|w| w[0].at >= w[1].at));

    // Nothing in the trail names a patient.
    let text = serde_json::to_string(&page.records).unwrap().to_lowercase();
    for s in &sa {
        assert!(
            !text.contains(&s.patient_name.to_lowercase()),
            "patient name in audit"
        );
        assert!(
            !text.contains(&format!("\"{}\"", s.patient_id.to_lowercase())),
            "patient id in audit"
        );
    }
    assert!(!text.contains("doe"));

    // Paged with a cursor bound to the hospital and range.
    let p1 = pacs_shared::audit::list_audit(&ctx, &a.id.parse().unwrap(), today, today, 2, None)
        .await
        .unwrap();
    assert_eq!(p1.records.len(), 2);
    let cursor = p1.next_cursor.clone().expect("more records");
    let p2 = pacs_shared::audit::list_audit(
        &ctx,
        &a.id.parse().unwrap(),
        today,
        today,
        1000,
        Some(&cursor),
    )
    .await
    .unwrap();
    assert_eq!(p1.records.len() + p2.records.len(), page.records.len());
    assert_eq!(p2.records[0], page.records[2]);
    let foreign = pacs_shared::audit::list_audit(
        &ctx,
        &b.id.parse().unwrap(),
        today,
        today,
        10,
        Some(&cursor),
    )
    .await;
    assert_eq!(foreign.unwrap_err().status, StatusCode::BAD_REQUEST);
}

/// Uploads `bytes` as `key` (an agent or admin key) the way the bridge
/// agent does, and waits until the indexer settles it.
async fn upload(env: &Env, key: &str, bytes: &[u8]) -> Value {
    use sha2::Digest;
    let file = json!({"size": bytes.len(), "sha256": hex::encode(sha2::Sha256::digest(bytes))});
    let (st, v) = env
        .call(
            "POST",
            "/api/uploads",
            Some(key),
            Some(json!({"files": [file]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let u = &v["data"]["uploads"][0];
    let id = u["uploadId"].as_str().unwrap().to_owned();
    let mut put = env.http.put(u["url"].as_str().unwrap());
    for (name, value) in u["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let resp = put.body(bytes.to_vec()).send().await.expect("put");
    assert!(resp.status().is_success(), "PUT {}", resp.status());
    for _ in 0..300 {
        let (st, v) = env.get(&format!("/api/uploads/{id}"), key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if v["data"]["status"] != "pending" {
            assert_eq!(v["data"]["status"], "indexed", "{v}");
            return v["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("upload {id} stayed pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_studies_read_back_through_the_api_and_dicomweb_client() {
    use pacs_testkit::dicom::{DicomFixture, new_uid};
    use sha2::Digest;

    let env = Env::start().await;
    let a = env.register("Alpha General").await;
    let b = env.register("Beta Clinic").await;

    // Two series of two instances, uploaded by the hospital's agent.
    let first = DicomFixture::ct().patient("PAT-DW-1", "WEBCLIENT^TESSA", "19800101", "F");
    let study_uid = first.study_instance_uid.clone();
    let second_series = first.next_instance().in_series(&study_uid, &new_uid());
    let fixtures = [
        first.clone(),
        first.next_instance(),
        second_series.clone(),
        second_series.next_instance(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut series: HashMap<String, Vec<String>> = HashMap::new();
    let mut files: HashMap<String, String> = HashMap::new();
    let mut digests: HashMap<String, String> = HashMap::new();
    for f in &fixtures {
        let bytes = f.to_bytes();
        let path = dir.path().join(format!("{}.dcm", f.sop_instance_uid));
        std::fs::write(&path, &bytes).unwrap();
        upload(&env, &a.agent, &bytes).await;
        series
            .entry(f.series_instance_uid.clone())
            .or_default()
            .push(f.sop_instance_uid.clone());
        files.insert(f.sop_instance_uid.clone(), path.display().to_string());
        digests.insert(
            f.sop_instance_uid.clone(),
            hex::encode(sha2::Sha256::digest(&bytes)),
        );
    }

    // The API lists the study with its counts, once the sweep counted it;
    // downloads are the bytes.
    env.stack.sweep_now().await.expect("sweep");
    let (st, v) = env.get("/api/studies?patientId=PAT-DW-1", &a.reader).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let s = &v["data"]["studies"][0];
    assert_eq!(s["studyInstanceUid"], json!(study_uid));
    assert_eq!(
        (
            s["numberOfSeries"].as_u64(),
            s["numberOfInstances"].as_u64()
        ),
        (Some(2), Some(4))
    );
    let (_, v) = env
        .get(&format!("/api/studies/{study_uid}"), &a.reader)
        .await;
    assert_eq!(v["data"]["series"].as_array().unwrap().len(), 2, "{v}");
    let (st, v) = env
        .get(&format!("/api/studies/{study_uid}/download"), &a.reader)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let instances = v["data"]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 4);
    for inst in instances {
        let bytes = reqwest::get(inst["url"].as_str().unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let sop = inst["sopInstanceUid"].as_str().unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            digests[sop],
            "download of {sop}"
        );
    }
    let (st, _) = env
        .get(&format!("/api/studies/{study_uid}/download"), &b.reader)
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another hospital downloads nothing"
    );

    // dicomweb-client searches, reads metadata and retrieves every
    // instance, and compares them with the files uploaded.
    let expected = json!({
        "studyInstanceUid": study_uid, "patientId": "PAT-DW-1",
        "patientName": "WEBCLIENT^TESSA", "series": series, "files": files,
    });
    let path = dir.path().join("expected.json");
    std::fs::write(&path, expected.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dicomweb_client_check.py");
    let run = |key: String| {
        let (base, path) = (env.base.clone(), path.clone());
        async move {
            tokio::process::Command::new("python3")
                .arg(script)
                .arg(base)
                .arg(path)
                .env("PACS_HUB_API_KEY", key)
                .output()
                .await
                .expect("python3 runs (scripts/setup installs dicomweb-client into .venv)")
        }
    };
    let out = run(a.reader.clone()).await;
    assert!(
        out.status.success(),
        "dicomweb-client check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An instance larger than a Lambda response is redirected to a
    // presigned URL, even for a client that asks for multipart.
    let big = first.next_instance().pixel_data_len(5 * 1024 * 1024);
    let big_bytes = big.to_bytes();
    upload(&env, &a.agent, &big_bytes).await;
    let path = format!(
        "{}/dicomweb/studies/{study_uid}/series/{}/instances/{}",
        env.base, big.series_instance_uid, big.sop_instance_uid
    );
    let resp = env
        .http
        .get(&path)
        .header("x-api-key", &a.reader)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let fetched = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        sha2::Sha256::digest(&fetched),
        sha2::Sha256::digest(&big_bytes)
    );

    // With another hospital's key the same script finds nothing.
    let out = run(b.reader.clone()).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("found 0 studies"));
}

/// The tenancy matrix's denials, for every read-path route and DICOMweb:
/// no key, a malformed or revoked key, a suspended hospital, an address
/// outside `allowedIPs`, a key of the wrong role, and another hospital's
/// study (404, never 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_route_refuses_every_intruder() {
    let env = Env::start().await;
    let platform = env.stack.platform_admin_key().to_owned();
    let a = env.register("Alpha General").await;
    let b = env.register("Beta Clinic").await;
    let suspended = env.register("Suspended Care").await;
    let fenced = env.register("Fenced Clinic").await;
    let study = env.seed_studies(&a.id, 0, 1).await.remove(0);
    let uid = study.uid.clone();
    let series = format!("{uid}.1");
    let sop = env.seed_series(&study, &series, 1).await.remove(0);

    let path = format!("/api/hospitals/{}/keys", a.id);
    let (_, v) = env
        .call(
            "POST",
            &path,
            Some(&a.admin),
            Some(json!({"role": "admin"})),
        )
        .await;
    let revoked = v["data"]["apiKey"].as_str().unwrap().to_owned();
    let key_id = v["data"]["keyId"].as_str().unwrap();
    let (st, _) = env
        .call("DELETE", &format!("{path}/{key_id}"), Some(&a.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let patch = |id: &str| format!("/api/hospitals/{id}");
    let (st, v) = env
        .call(
            "PATCH",
            &patch(&suspended.id),
            Some(&platform),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let fence = json!({"settings": {"allowedIPs": ["10.0.0.0/8"]}});
    let (st, v) = env
        .call(
            "PATCH",
            &patch(&fenced.id),
            Some(&fenced.admin),
            Some(fence),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // (method, path, admin only, names a study)
    let routes: Vec<(&str, String, bool, bool)> = vec![
        ("GET", "/api/studies".into(), false, false),
        ("GET", format!("/api/studies/{uid}"), false, true),
        ("GET", format!("/api/studies/{uid}/download"), false, true),
        ("POST", format!("/api/studies/{uid}/shares"), true, true),
        (
            "DELETE",
            format!("/api/studies/{uid}/shares/{}", b.id),
            true,
            true,
        ),
        ("GET", "/dicomweb/studies".into(), false, false),
        (
            "GET",
            format!("/dicomweb/studies/{uid}/series"),
            false,
            true,
        ),
        (
            "GET",
            format!("/dicomweb/studies/{uid}/series/{series}/instances"),
            false,
            true,
        ),
        (
            "GET",
            format!("/dicomweb/studies/{uid}/metadata"),
            false,
            true,
        ),
        (
            "GET",
            format!("/dicomweb/studies/{uid}/series/{series}/instances/{sop}"),
            false,
            true,
        ),
    ];
    let body = |method: &str| (method == "POST").then(|| json!({"hospitalId": b.id}));
    for (method, path, admin_only, names_study) in &routes {
        let what = format!("{method} {path}");
        let denied = |who: &str, got: (StatusCode, Value), status: u16, code: &str| {
            assert_eq!(got.0.as_u16(), status, "{who} on {what}: {}", got.1);
            assert_eq!(got.1["code"], code, "{who} on {what}: {}", got.1);
        };
        denied(
            "no key",
            env.call(method, path, None, body(method)).await,
            401,
            "Unauthorized",
        );
        let got = env
            .call(method, path, Some("phk_nonsense"), body(method))
            .await;
        denied("malformed key", got, 401, "Unauthorized");
        let got = env.call(method, path, Some(&revoked), body(method)).await;
        denied("revoked key", got, 401, "Unauthorized");
        let got = env
            .call(method, path, Some(&suspended.admin), body(method))
            .await;
        denied("suspended hospital", got, 403, "HospitalInactive");
        let got = env
            .call(method, path, Some(&fenced.admin), body(method))
            .await;
        denied("outside allowedIPs", got, 403, "IpNotAllowed");

        let mut wrong = vec![
            ("agent", a.agent.clone()),
            ("platform admin", platform.clone()),
        ];
        if *admin_only {
            wrong.push(("reader", a.reader.clone()));
        }
        for (who, key) in wrong {
            let got = env.call(method, path, Some(&key), body(method)).await;
            denied(&format!("{who} key"), got, 403, "Forbidden");
        }
        if *names_study {
            let keys = if *admin_only {
                vec![&b.admin]
            } else {
                vec![&b.admin, &b.reader]
            };
            let other = (*method == "POST").then(|| json!({"hospitalId": a.id}));
            for key in keys {
                let got = env.call(method, path, Some(key), other.clone()).await;
                denied("another hospital", got, 404, "NotFound");
            }
        }
    }
}

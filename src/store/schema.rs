//! Versioned migrations, one list per engine. Each entry runs once, in order, inside a
//! transaction; SQLite's version is `PRAGMA user_version`, PostgreSQL's the row of
//! `schema_version`. Never edit a released migration: add one, to both lists, with the
//! same meaning (tests/store_backends.rs runs one suite over both).

/// SQLite migrations that rebuild tables: the runner turns foreign keys off around them
/// (SQLite's documented procedure) and checks them before committing.
pub const REBUILDS: &[usize] = &[8];

pub const MIGRATIONS: &[&str] = &[
    // 1: the core pipeline.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    -- One sweep (scan) or controller session.
    CREATE TABLE scans (
        id          INTEGER PRIMARY KEY,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        source      TEXT NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 0
    );

    -- Namespace + top controller.
    CREATE TABLE workloads (
        id         INTEGER PRIMARY KEY,
        namespace  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        UNIQUE (namespace, kind, name)
    );

    -- One image content: by digest, or by tag when unpinned.
    CREATE TABLE images (
        id         INTEGER PRIMARY KEY,
        key        TEXT NOT NULL UNIQUE,
        registry   TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag        TEXT,
        digest     TEXT,
        first_seen INTEGER NOT NULL
    );

    -- The unit of history and of DefectDojo tests: an image repository or a resource, per family.
    CREATE TABLE subjects (
        id         INTEGER PRIMARY KEY,
        family     TEXT NOT NULL,
        key        TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        UNIQUE (family, key)
    );

    -- What was scanned (an image by digest or tag, or a resource) with one finding set.
    -- Content-addressed: a set never changes; a report whose content changes moves to
    -- another target. Reports of one image that disagree (some rescanned with a newer
    -- Trivy DB, or a mutable tag pulled at different times) are several targets, and the
    -- subject holds their union until the last report of a variant is gone.
    CREATE TABLE targets (
        id         INTEGER PRIMARY KEY,
        subject_id INTEGER NOT NULL REFERENCES subjects(id),
        key        TEXT NOT NULL,
        set_hash   BLOB NOT NULL,
        image_id   INTEGER REFERENCES images(id),
        components INTEGER,
        created_at INTEGER NOT NULL,
        -- Newest report timestamp seen for this content: the findings' last_seen.
        last_scanned INTEGER,
        -- Set when no report refers to it any more; removed after the grace period, so
        -- a report flipping back (or listed twice in one input) finds it again.
        orphaned_at  INTEGER,
        UNIQUE (subject_id, key, set_hash)
    );

    -- Report objects; gone_since starts the grace period.
    CREATE TABLE reports (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        workload_id INTEGER NOT NULL REFERENCES workloads(id),
        container   TEXT NOT NULL,
        target_id   INTEGER NOT NULL REFERENCES targets(id),
        scanned_at  INTEGER,
        seen_scan   INTEGER NOT NULL,
        gone_since  INTEGER,
        UNIQUE (kind, namespace, name)
    );
    CREATE INDEX reports_target ON reports(target_id);
    CREATE INDEX reports_seen ON reports(seen_scan);

    -- Findings per subject, with their history.
    CREATE TABLE findings (
        id          INTEGER PRIMARY KEY,
        subject_id  INTEGER NOT NULL REFERENCES subjects(id),
        fkey        TEXT NOT NULL,
        -- The title when first seen, frozen: DefectDojo matches on it.
        first_title TEXT NOT NULL,
        severity    TEXT NOT NULL,
        fixable     INTEGER NOT NULL,
        data        TEXT NOT NULL,
        data_at     INTEGER,
        first_seen  INTEGER NOT NULL,
        -- Newest Trivy scan (report updateTimestamp) that listed it.
        last_seen   INTEGER NOT NULL,
        resolved_at INTEGER,
        UNIQUE (subject_id, fkey)
    );
    CREATE INDEX findings_open ON findings(resolved_at);

    CREATE TABLE target_findings (
        target_id  INTEGER NOT NULL,
        finding_id INTEGER NOT NULL,
        PRIMARY KEY (target_id, finding_id)
    ) WITHOUT ROWID;
    CREATE INDEX target_findings_finding ON target_findings(finding_id);

    -- opened, resolved, reopened, severity (detail: old→new), fixable.
    CREATE TABLE finding_events (
        id         INTEGER PRIMARY KEY,
        finding_id INTEGER NOT NULL,
        at         INTEGER NOT NULL,
        event      TEXT NOT NULL,
        detail     TEXT
    );
    CREATE INDEX finding_events_at ON finding_events(at);

    -- DefectDojo: one row per test we push to.
    CREATE TABLE dojo_tests (
        id              INTEGER PRIMARY KEY,
        product_type    TEXT NOT NULL,
        product         TEXT NOT NULL,
        engagement      TEXT NOT NULL,
        title           TEXT NOT NULL,
        family          TEXT NOT NULL,
        subject_id      INTEGER NOT NULL,
        -- Membership hash DefectDojo acknowledged (201 on reimport).
        acked_hash      TEXT,
        -- Hash including volatile fields, once every changed finding was patched.
        synced_hash     TEXT,
        dd_test_id      INTEGER,
        last_push_at    INTEGER,
        last_result     TEXT,
        UNIQUE (product_type, product, engagement, title, family)
    );

    -- What DefectDojo holds for each finding we sent: its id, the hash of the volatile
    -- fields it has (as imported or last patched), and its triage state.
    CREATE TABLE dojo_findings (
        test_id       INTEGER NOT NULL,
        uid           TEXT NOT NULL,
        dd_id         INTEGER,
        sent_hash     TEXT,
        active        INTEGER,
        risk_accepted INTEGER NOT NULL DEFAULT 0,
        false_p       INTEGER NOT NULL DEFAULT 0,
        out_of_scope  INTEGER NOT NULL DEFAULT 0,
        checked_at    INTEGER,
        PRIMARY KEY (test_id, uid)
    ) WITHOUT ROWID;

    -- Pushes recorded before they are sent, removed once DefectDojo accepted them.
    -- action: reimport (membership changed) or sync (only volatile fields changed).
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        test_id         INTEGER NOT NULL UNIQUE REFERENCES dojo_tests(id),
        action          TEXT NOT NULL,
        content_hash    TEXT NOT NULL,
        full_hash       TEXT NOT NULL,
        form            TEXT NOT NULL,
        file            BLOB NOT NULL,
        created_at      INTEGER NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_attempt_at INTEGER,
        last_error      TEXT
    );
    CREATE INDEX outbox_state ON outbox(state);

    -- Namespace labels and annotations, for mapping templates and team routing.
    CREATE TABLE namespaces (
        name        TEXT PRIMARY KEY,
        labels      TEXT NOT NULL,
        annotations TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
    );

    -- Product type / product / engagement known to exist: the first push into any other
    -- runs alone, because parallel auto-creation duplicates engagements.
    CREATE TABLE dojo_contexts (
        product_type TEXT NOT NULL,
        product      TEXT NOT NULL,
        engagement   TEXT NOT NULL,
        PRIMARY KEY (product_type, product, engagement)
    ) WITHOUT ROWID;
    "#,
    // 2: alerts.
    r#"
    -- Messages sent (or being sent) to a destination; `sent` ones count against the
    -- hourly cap. A row left in 'sending' is a send a crash interrupted.
    CREATE TABLE alert_messages (
        id          INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        kind        TEXT NOT NULL,
        title       TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        sent_at     INTEGER,
        last_error  TEXT
    );
    CREATE INDEX alert_messages_sent ON alert_messages(destination, sent_at);

    -- The alert outbox and record: one row per destination and new finding. 'pending'
    -- until the destination accepted a message holding it ('sent'); 'ignored' (ignore
    -- list, re-evaluated when an entry expires), 'accepted' (triaged in DefectDojo),
    -- 'resolved' (gone before it was sent) and 'orphaned' (destination removed) are final
    -- or parked states. A finding is queued once per destination, ever.
    CREATE TABLE alert_items (
        id          INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        finding_id  INTEGER NOT NULL,
        namespaces  TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT,
        created_at  INTEGER NOT NULL,
        message_id  INTEGER,
        sent_at     INTEGER,
        UNIQUE (destination, finding_id)
    );
    CREATE INDEX alert_items_state ON alert_items(state);
    "#,
    // 3: monthly summaries (being written; not released).
    r#"
    -- Where a subject ran: reports rows disappear after the grace period, but a summary
    -- of a past month still needs the namespaces and workloads of each image. One row
    -- per subject x image (digest; 0 for resources) x workload, with the first and last
    -- time a report showed it; last_seen is also advanced when the report expires.
    CREATE TABLE sightings (
        subject_id  INTEGER NOT NULL,
        image_id    INTEGER NOT NULL,
        workload_id INTEGER NOT NULL,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        PRIMARY KEY (subject_id, image_id, workload_id)
    ) WITHOUT ROWID;

    -- A summary reads the events of the findings of its months, in finding order.
    CREATE INDEX finding_events_finding ON finding_events(finding_id, at);

    -- Seed from what runs now, so a store upgraded mid-month has this month's places.
    INSERT OR IGNORE INTO sightings(subject_id, image_id, workload_id, first_seen, last_seen)
        SELECT t.subject_id, COALESCE(t.image_id, 0), r.workload_id,
               MIN(w.first_seen), MAX(COALESCE(r.gone_since, r.scanned_at, w.first_seen))
        FROM reports r JOIN targets t ON t.id = r.target_id
        JOIN workloads w ON w.id = r.workload_id
        GROUP BY t.subject_id, COALESCE(t.image_id, 0), r.workload_id;

    -- One row per month x audience (scope + recipient list): claimed before sending,
    -- marked sent once the server accepted, so a restart or a second replica never
    -- sends it twice.
    CREATE TABLE sent_summaries (
        month          TEXT NOT NULL,
        audience       TEXT NOT NULL,
        scope          TEXT NOT NULL,
        recipients     TEXT NOT NULL,
        message_id     TEXT NOT NULL,
        -- sending (claimed), sent, failed (retried), refused (5xx: not retried)
        state          TEXT NOT NULL,
        claimed_by     TEXT NOT NULL,
        claimed_at     INTEGER NOT NULL,
        sent_at        INTEGER,
        attempts       INTEGER NOT NULL DEFAULT 0,
        last_error     TEXT,
        PRIMARY KEY (month, audience)
    ) WITHOUT ROWID;
    "#,
    // 4: what a sweep may end. A report remembers the label selector it was last read
    // under ("" for none: files, stdin, a list without selector), so a sweep listed with a
    // selector ends only the reports it could have listed.
    r#"
    ALTER TABLE reports ADD COLUMN selector TEXT NOT NULL DEFAULT '';
    "#,
    // 5: the labels trivy-operator copied from the workload onto the report
    // (`reportResourceLabels`), bookkeeping labels left out, as a JSON object: mapping
    // templates read them (`workload_label:<key>`). Reports stored before read as none
    // until their next scan.
    r#"
    ALTER TABLE reports ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
    "#,
    // 6: the inventory (packages per image content, from SbomReports and CycloneDX files)
    // and CI sightings (Trivy CLI results and SBOMs: an image scanned, not a workload).
    r#"
    -- One package content, stored once however many images hold it.
    CREATE TABLE packages (
        id        INTEGER PRIMARY KEY,
        ecosystem TEXT NOT NULL,
        name      TEXT NOT NULL,
        version   TEXT NOT NULL,
        purl      TEXT NOT NULL,
        -- The name's last segment, lower case: queries find
        -- `org.apache.logging.log4j:log4j-core` as `log4j-core`.
        short     TEXT NOT NULL,
        UNIQUE (name, version, ecosystem, purl)
    );
    CREATE INDEX packages_short ON packages(short);

    -- An image content's packages as its newest SBOM listed them.
    CREATE TABLE image_packages (
        image_id   INTEGER NOT NULL,
        package_id INTEGER NOT NULL,
        PRIMARY KEY (package_id, image_id)
    ) WITHOUT ROWID;
    CREATE INDEX image_packages_image ON image_packages(image_id);

    -- Where an image's inventory came from, and its hash: the same SBOM again writes nothing.
    CREATE TABLE image_sboms (
        image_id   INTEGER PRIMARY KEY,
        origin     TEXT NOT NULL,
        set_hash   BLOB NOT NULL,
        packages   INTEGER NOT NULL,
        sbom_at    INTEGER,
        updated_at INTEGER NOT NULL
    );

    -- An image content CI scanned (Trivy CLI JSON or an SBOM), by digest when pinned.
    CREATE TABLE ci_images (
        image_id   INTEGER PRIMARY KEY,
        artifact   TEXT NOT NULL,
        source     TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL,
        scanned_at INTEGER
    );

    -- What CI found in an image content. The same (subject, key) in `findings` is the
    -- same finding seen at runtime. resolved_at: a newer CI scan of that image, in a
    -- family it covered, no longer listed it.
    CREATE TABLE ci_findings (
        image_id    INTEGER NOT NULL,
        subject_id  INTEGER NOT NULL,
        fkey        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        fixable     INTEGER NOT NULL,
        data        TEXT NOT NULL,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        resolved_at INTEGER,
        PRIMARY KEY (image_id, subject_id, fkey)
    ) WITHOUT ROWID;
    CREATE INDEX ci_findings_finding ON ci_findings(subject_id, fkey);

    -- The inventory asks where an image content runs.
    CREATE INDEX targets_image ON targets(image_id);
    -- Where an image ran and when it ran last, for `query`: per image, not per subject.
    CREATE INDEX sightings_image ON sightings(image_id, workload_id);
    "#,
    // 7: alerts on CI results.
    r#"
    -- A CI finding new to the store, in the order the store learnt of them (a CI file's
    -- own scan time may be older than what was read before it): what an alert channel
    -- with `origin: ci` or `any` reads past its cursor, as `opened` events for runtime.
    CREATE TABLE ci_events (
        id         INTEGER PRIMARY KEY,
        image_id   INTEGER NOT NULL,
        subject_id INTEGER NOT NULL,
        fkey       TEXT NOT NULL,
        at         INTEGER NOT NULL
    );

    -- The CI side of the alert outbox and record: as alert_items, one row per destination
    -- and finding (a subject's join key: the same finding in two digests is one), ever.
    CREATE TABLE ci_alert_items (
        id          INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        image_id    INTEGER NOT NULL,
        subject_id  INTEGER NOT NULL,
        fkey        TEXT NOT NULL,
        jkey        TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT,
        created_at  INTEGER NOT NULL,
        message_id  INTEGER,
        sent_at     INTEGER,
        UNIQUE (destination, subject_id, jkey)
    );
    CREATE INDEX ci_alert_items_state ON ci_alert_items(state);

    -- A test of `defectdojo.ci_engagement` (images only CI saw) is 'ci': it is emptied
    -- only by CI results, never because the cluster does not run the image.
    ALTER TABLE dojo_tests ADD COLUMN origin TEXT NOT NULL DEFAULT 'runtime';

    -- The newest CI scan of each image content that covered a family (scanned for it,
    -- found or not): a repository's CI view is its newest covered content.
    CREATE TABLE ci_covered (
        image_id   INTEGER NOT NULL,
        family     TEXT NOT NULL,
        scanned_at INTEGER NOT NULL,
        PRIMARY KEY (image_id, family)
    ) WITHOUT ROWID;
    "#,
    // 8: clusters. Workloads, reports and namespaces belong to a cluster, so that a
    // fleet's clusters share one store (PostgreSQL) and a sweep, relist or grace expiry
    // touches its own cluster's rows only. Images, subjects, targets and findings are
    // shared: one image digest is one content wherever it runs. Rows written before
    // belong to the cluster the store was claimed for ('' until it is claimed; the first
    // claim takes them). The tables are rebuilt (SQLite cannot change a UNIQUE
    // constraint); the runner turns foreign keys off around this one.
    r#"
    CREATE TABLE workloads_new (
        id         INTEGER PRIMARY KEY,
        cluster    TEXT NOT NULL,
        namespace  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        UNIQUE (cluster, namespace, kind, name)
    );
    INSERT INTO workloads_new(id, cluster, namespace, kind, name, first_seen)
        SELECT id, COALESCE((SELECT value FROM meta WHERE key = 'cluster'), ''),
               namespace, kind, name, first_seen FROM workloads;
    DROP TABLE workloads;
    ALTER TABLE workloads_new RENAME TO workloads;

    CREATE TABLE reports_new (
        id          INTEGER PRIMARY KEY,
        cluster     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        workload_id INTEGER NOT NULL REFERENCES workloads(id),
        container   TEXT NOT NULL,
        target_id   INTEGER NOT NULL REFERENCES targets(id),
        scanned_at  INTEGER,
        seen_scan   INTEGER NOT NULL,
        gone_since  INTEGER,
        selector    TEXT NOT NULL DEFAULT '',
        labels      TEXT NOT NULL DEFAULT '{}',
        UNIQUE (cluster, kind, namespace, name)
    );
    INSERT INTO reports_new(id, cluster, kind, namespace, name, workload_id, container,
                            target_id, scanned_at, seen_scan, gone_since, selector, labels)
        SELECT id, COALESCE((SELECT value FROM meta WHERE key = 'cluster'), ''), kind,
               namespace, name, workload_id, container, target_id, scanned_at, seen_scan,
               gone_since, selector, labels FROM reports;
    DROP TABLE reports;
    ALTER TABLE reports_new RENAME TO reports;
    CREATE INDEX reports_target ON reports(target_id);
    CREATE INDEX reports_seen ON reports(seen_scan);
    CREATE INDEX reports_workload ON reports(workload_id);

    CREATE TABLE namespaces_new (
        cluster     TEXT NOT NULL,
        name        TEXT NOT NULL,
        labels      TEXT NOT NULL,
        annotations TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (cluster, name)
    ) WITHOUT ROWID;
    INSERT INTO namespaces_new(cluster, name, labels, annotations, updated_at)
        SELECT COALESCE((SELECT value FROM meta WHERE key = 'cluster'), ''), name, labels,
               annotations, updated_at FROM namespaces;
    DROP TABLE namespaces;
    ALTER TABLE namespaces_new RENAME TO namespaces;

    ALTER TABLE scans ADD COLUMN cluster TEXT NOT NULL DEFAULT '';

    -- The clusters that write to this store, and when each last did.
    CREATE TABLE clusters (
        name       TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL,
        -- The kube-system Namespace's UID, once a sweep read it: two installs given one
        -- cluster name are told apart by it.
        uid        TEXT
    );

    -- Who runs the outputs for every cluster of a shared store (store::lease): the
    -- holder, its fencing token (each new holder gets the next), and the database
    -- server's milliseconds.
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        token       INTEGER NOT NULL,
        acquired_at INTEGER NOT NULL,
        renewed_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    "#,
];

/// PostgreSQL's migrations. 1 is SQLite's 1 to 7 in PostgreSQL's types: BIGINT for
/// INTEGER (SQLite's integers are 64-bit), BYTEA for BLOB, identity columns for rowids.
pub const POSTGRES: &[&str] = &[
    // 1: the schema of SQLite's migration 8.
    r#"

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    -- One sweep (scan) or controller session.
    CREATE TABLE scans (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        started_at  BIGINT NOT NULL,
        finished_at BIGINT,
        source      TEXT NOT NULL,
        complete    BIGINT NOT NULL DEFAULT 0,
        cluster     TEXT NOT NULL DEFAULT ''
    );

    -- Namespace + top controller.
    CREATE TABLE workloads (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        cluster    TEXT NOT NULL,
        namespace  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        UNIQUE (cluster, namespace, kind, name)
    );

    -- One image content: by digest, or by tag when unpinned.
    CREATE TABLE images (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        key        TEXT NOT NULL UNIQUE,
        registry   TEXT NOT NULL,
        repository TEXT NOT NULL,
        tag        TEXT,
        digest     TEXT,
        first_seen BIGINT NOT NULL
    );

    -- The unit of history and of DefectDojo tests: an image repository or a resource, per family.
    CREATE TABLE subjects (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        family     TEXT NOT NULL,
        key        TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        UNIQUE (family, key)
    );

    -- What was scanned (an image by digest or tag, or a resource) with one finding set.
    -- Content-addressed: a set never changes; a report whose content changes moves to
    -- another target. Reports of one image that disagree (some rescanned with a newer
    -- Trivy DB, or a mutable tag pulled at different times) are several targets, and the
    -- subject holds their union until the last report of a variant is gone.
    CREATE TABLE targets (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        subject_id BIGINT NOT NULL REFERENCES subjects(id),
        key        TEXT NOT NULL,
        set_hash   BYTEA NOT NULL,
        image_id   BIGINT REFERENCES images(id),
        components BIGINT,
        created_at BIGINT NOT NULL,
        -- Newest report timestamp seen for this content: the findings' last_seen.
        last_scanned BIGINT,
        -- Set when no report refers to it any more; removed after the grace period, so
        -- a report flipping back (or listed twice in one input) finds it again.
        orphaned_at  BIGINT,
        UNIQUE (subject_id, key, set_hash)
    );

    -- Report objects; gone_since starts the grace period.
    CREATE TABLE reports (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        cluster     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        workload_id BIGINT NOT NULL REFERENCES workloads(id),
        container   TEXT NOT NULL,
        target_id   BIGINT NOT NULL REFERENCES targets(id),
        scanned_at  BIGINT,
        seen_scan   BIGINT NOT NULL,
        gone_since  BIGINT,
        UNIQUE (cluster, kind, namespace, name)
    );
    CREATE INDEX reports_target ON reports(target_id);
    CREATE INDEX reports_seen ON reports(seen_scan);
    CREATE INDEX reports_workload ON reports(workload_id);

    -- Findings per subject, with their history.
    CREATE TABLE findings (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        subject_id  BIGINT NOT NULL REFERENCES subjects(id),
        fkey        TEXT NOT NULL,
        -- The title when first seen, frozen: DefectDojo matches on it.
        first_title TEXT NOT NULL,
        severity    TEXT NOT NULL,
        fixable     BIGINT NOT NULL,
        data        TEXT NOT NULL,
        data_at     BIGINT,
        first_seen  BIGINT NOT NULL,
        -- Newest Trivy scan (report updateTimestamp) that listed it.
        last_seen   BIGINT NOT NULL,
        resolved_at BIGINT,
        UNIQUE (subject_id, fkey)
    );
    CREATE INDEX findings_open ON findings(resolved_at);

    CREATE TABLE target_findings (
        target_id  BIGINT NOT NULL,
        finding_id BIGINT NOT NULL,
        PRIMARY KEY (target_id, finding_id)
    );
    CREATE INDEX target_findings_finding ON target_findings(finding_id);

    -- opened, resolved, reopened, severity (detail: old→new), fixable.
    CREATE TABLE finding_events (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        finding_id BIGINT NOT NULL,
        at         BIGINT NOT NULL,
        event      TEXT NOT NULL,
        detail     TEXT
    );
    CREATE INDEX finding_events_at ON finding_events(at);

    -- DefectDojo: one row per test we push to.
    CREATE TABLE dojo_tests (
        id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        product_type    TEXT NOT NULL,
        product         TEXT NOT NULL,
        engagement      TEXT NOT NULL,
        title           TEXT NOT NULL,
        family          TEXT NOT NULL,
        subject_id      BIGINT NOT NULL,
        -- Membership hash DefectDojo acknowledged (201 on reimport).
        acked_hash      TEXT,
        -- Hash including volatile fields, once every changed finding was patched.
        synced_hash     TEXT,
        dd_test_id      BIGINT,
        last_push_at    BIGINT,
        last_result     TEXT,
        UNIQUE (product_type, product, engagement, title, family)
    );

    -- What DefectDojo holds for each finding we sent: its id, the hash of the volatile
    -- fields it has (as imported or last patched), and its triage state.
    CREATE TABLE dojo_findings (
        test_id       BIGINT NOT NULL,
        uid           TEXT NOT NULL,
        dd_id         BIGINT,
        sent_hash     TEXT,
        active        BIGINT,
        risk_accepted BIGINT NOT NULL DEFAULT 0,
        false_p       BIGINT NOT NULL DEFAULT 0,
        out_of_scope  BIGINT NOT NULL DEFAULT 0,
        checked_at    BIGINT,
        PRIMARY KEY (test_id, uid)
    );

    -- Pushes recorded before they are sent, removed once DefectDojo accepted them.
    -- action: reimport (membership changed) or sync (only volatile fields changed).
    CREATE TABLE outbox (
        id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        test_id         BIGINT NOT NULL UNIQUE REFERENCES dojo_tests(id),
        action          TEXT NOT NULL,
        content_hash    TEXT NOT NULL,
        full_hash       TEXT NOT NULL,
        form            TEXT NOT NULL,
        file            BYTEA NOT NULL,
        created_at      BIGINT NOT NULL,
        state           TEXT NOT NULL,
        attempts        BIGINT NOT NULL DEFAULT 0,
        last_attempt_at BIGINT,
        last_error      TEXT
    );
    CREATE INDEX outbox_state ON outbox(state);

    -- Namespace labels and annotations, for mapping templates and team routing.
    CREATE TABLE namespaces (
        cluster     TEXT NOT NULL,
        name        TEXT NOT NULL,
        labels      TEXT NOT NULL,
        annotations TEXT NOT NULL,
        updated_at  BIGINT NOT NULL,
        PRIMARY KEY (cluster, name)
    );

    -- Product type / product / engagement known to exist: the first push into any other
    -- runs alone, because parallel auto-creation duplicates engagements.
    CREATE TABLE dojo_contexts (
        product_type TEXT NOT NULL,
        product      TEXT NOT NULL,
        engagement   TEXT NOT NULL,
        PRIMARY KEY (product_type, product, engagement)
    );
    

    -- Messages sent (or being sent) to a destination; `sent` ones count against the
    -- hourly cap. A row left in 'sending' is a send a crash interrupted.
    CREATE TABLE alert_messages (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        destination TEXT NOT NULL,
        kind        TEXT NOT NULL,
        title       TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        sent_at     BIGINT,
        last_error  TEXT
    );
    CREATE INDEX alert_messages_sent ON alert_messages(destination, sent_at);

    -- The alert outbox and record: one row per destination and new finding. 'pending'
    -- until the destination accepted a message holding it ('sent'); 'ignored' (ignore
    -- list, re-evaluated when an entry expires), 'accepted' (triaged in DefectDojo),
    -- 'resolved' (gone before it was sent) and 'orphaned' (destination removed) are final
    -- or parked states. A finding is queued once per destination, ever.
    CREATE TABLE alert_items (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        destination TEXT NOT NULL,
        finding_id  BIGINT NOT NULL,
        namespaces  TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT,
        created_at  BIGINT NOT NULL,
        message_id  BIGINT,
        sent_at     BIGINT,
        UNIQUE (destination, finding_id)
    );
    CREATE INDEX alert_items_state ON alert_items(state);
    

    -- Where a subject ran: reports rows disappear after the grace period, but a summary
    -- of a past month still needs the namespaces and workloads of each image. One row
    -- per subject x image (digest; 0 for resources) x workload, with the first and last
    -- time a report showed it; last_seen is also advanced when the report expires.
    CREATE TABLE sightings (
        subject_id  BIGINT NOT NULL,
        image_id    BIGINT NOT NULL,
        workload_id BIGINT NOT NULL,
        first_seen  BIGINT NOT NULL,
        last_seen   BIGINT NOT NULL,
        PRIMARY KEY (subject_id, image_id, workload_id)
    );

    -- A summary reads the events of the findings of its months, in finding order.
    CREATE INDEX finding_events_finding ON finding_events(finding_id, at);

    
    -- One row per month x audience (scope + recipient list): claimed before sending,
    -- marked sent once the server accepted, so a restart or a second replica never
    -- sends it twice.
    CREATE TABLE sent_summaries (
        month          TEXT NOT NULL,
        audience       TEXT NOT NULL,
        scope          TEXT NOT NULL,
        recipients     TEXT NOT NULL,
        message_id     TEXT NOT NULL,
        -- sending (claimed), sent, failed (retried), refused (5xx: not retried)
        state          TEXT NOT NULL,
        claimed_by     TEXT NOT NULL,
        claimed_at     BIGINT NOT NULL,
        sent_at        BIGINT,
        attempts       BIGINT NOT NULL DEFAULT 0,
        last_error     TEXT,
        PRIMARY KEY (month, audience)
    );
    

    ALTER TABLE reports ADD COLUMN selector TEXT NOT NULL DEFAULT '';
    

    ALTER TABLE reports ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
    

    -- One package content, stored once however many images hold it.
    CREATE TABLE packages (
        id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        ecosystem TEXT NOT NULL,
        name      TEXT NOT NULL,
        version   TEXT NOT NULL,
        purl      TEXT NOT NULL,
        -- The name's last segment, lower case: queries find
        -- `org.apache.logging.log4j:log4j-core` as `log4j-core`.
        short     TEXT NOT NULL,
        UNIQUE (name, version, ecosystem, purl)
    );
    CREATE INDEX packages_short ON packages(short);

    -- An image content's packages as its newest SBOM listed them.
    CREATE TABLE image_packages (
        image_id   BIGINT NOT NULL,
        package_id BIGINT NOT NULL,
        PRIMARY KEY (package_id, image_id)
    );
    CREATE INDEX image_packages_image ON image_packages(image_id);

    -- Where an image's inventory came from, and its hash: the same SBOM again writes nothing.
    CREATE TABLE image_sboms (
        image_id   BIGINT PRIMARY KEY,
        origin     TEXT NOT NULL,
        set_hash   BYTEA NOT NULL,
        packages   BIGINT NOT NULL,
        sbom_at    BIGINT,
        updated_at BIGINT NOT NULL
    );

    -- An image content CI scanned (Trivy CLI JSON or an SBOM), by digest when pinned.
    CREATE TABLE ci_images (
        image_id   BIGINT PRIMARY KEY,
        artifact   TEXT NOT NULL,
        source     TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen  BIGINT NOT NULL,
        scanned_at BIGINT
    );

    -- What CI found in an image content. The same (subject, key) in `findings` is the
    -- same finding seen at runtime. resolved_at: a newer CI scan of that image, in a
    -- family it covered, no longer listed it.
    CREATE TABLE ci_findings (
        image_id    BIGINT NOT NULL,
        subject_id  BIGINT NOT NULL,
        fkey        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        fixable     BIGINT NOT NULL,
        data        TEXT NOT NULL,
        first_seen  BIGINT NOT NULL,
        last_seen   BIGINT NOT NULL,
        resolved_at BIGINT,
        PRIMARY KEY (image_id, subject_id, fkey)
    );
    CREATE INDEX ci_findings_finding ON ci_findings(subject_id, fkey);

    -- The inventory asks where an image content runs.
    CREATE INDEX targets_image ON targets(image_id);
    -- Where an image ran and when it ran last, for `query`: per image, not per subject.
    CREATE INDEX sightings_image ON sightings(image_id, workload_id);
    

    -- A CI finding new to the store, in the order the store learnt of them (a CI file's
    -- own scan time may be older than what was read before it): what an alert channel
    -- with `origin: ci` or `any` reads past its cursor, as `opened` events for runtime.
    CREATE TABLE ci_events (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        image_id   BIGINT NOT NULL,
        subject_id BIGINT NOT NULL,
        fkey       TEXT NOT NULL,
        at         BIGINT NOT NULL
    );

    -- The CI side of the alert outbox and record: as alert_items, one row per destination
    -- and finding (a subject's join key: the same finding in two digests is one), ever.
    CREATE TABLE ci_alert_items (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        destination TEXT NOT NULL,
        image_id    BIGINT NOT NULL,
        subject_id  BIGINT NOT NULL,
        fkey        TEXT NOT NULL,
        jkey        TEXT NOT NULL,
        state       TEXT NOT NULL,
        reason      TEXT,
        created_at  BIGINT NOT NULL,
        message_id  BIGINT,
        sent_at     BIGINT,
        UNIQUE (destination, subject_id, jkey)
    );
    CREATE INDEX ci_alert_items_state ON ci_alert_items(state);

    -- A test of `defectdojo.ci_engagement` (images only CI saw) is 'ci': it is emptied
    -- only by CI results, never because the cluster does not run the image.
    ALTER TABLE dojo_tests ADD COLUMN origin TEXT NOT NULL DEFAULT 'runtime';

    -- The newest CI scan of each image content that covered a family (scanned for it,
    -- found or not): a repository's CI view is its newest covered content.
    CREATE TABLE ci_covered (
        image_id   BIGINT NOT NULL,
        family     TEXT NOT NULL,
        scanned_at BIGINT NOT NULL,
        PRIMARY KEY (image_id, family)
    );

    CREATE TABLE clusters (
        name       TEXT PRIMARY KEY,
        first_seen BIGINT NOT NULL,
        last_seen  BIGINT NOT NULL,
        uid        TEXT
    );

    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        token       BIGINT NOT NULL,
        acquired_at BIGINT NOT NULL,
        renewed_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    "#,
];

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// A store written before migration 5 keeps its reports; they read as having no
    /// workload labels until their next scan.
    #[test]
    fn migration_5_gives_existing_reports_no_labels() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).expect("open");
            for sql in &super::MIGRATIONS[..4] {
                c.execute_batch(sql).expect("migration");
            }
            c.execute_batch(
                "PRAGMA user_version = 4;
                 INSERT INTO workloads(id, namespace, kind, name, first_seen) VALUES(1, 'shop', 'Deployment', 'api', 0);
                 INSERT INTO subjects(id, family, key, first_seen) VALUES(1, 'vulnerability', 'ghcr.io/org/api', 0);
                 INSERT INTO targets(id, subject_id, key, set_hash, created_at) VALUES(1, 1, 'k', x'00', 0);
                 INSERT INTO reports(kind, namespace, name, workload_id, container, target_id, seen_scan)
                     VALUES('VulnerabilityReport', 'shop', 'r', 1, 'app', 1, 1);",
            )
            .expect("seed");
        }
        let store = crate::store::Store::open(&path).expect("migrate");
        assert_eq!(
            store.schema_version().expect("version"),
            super::MIGRATIONS.len()
        );
        let labels: String = store
            .conn()
            .query_row("SELECT labels FROM reports", [], |r| r.get(0))
            .expect("labels");
        assert_eq!(labels, "{}");
    }
}

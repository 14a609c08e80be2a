-- Every audit run's report (JSON), newest last; `discrepancies` = 0: clean.
CREATE TABLE audit_reports (
    id TEXT PRIMARY KEY NOT NULL,
    finished_at BIGINT NOT NULL,
    discrepancies INTEGER NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX audit_reports_finished ON audit_reports (finished_at);

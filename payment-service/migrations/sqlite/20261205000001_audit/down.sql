DROP TABLE audit_reports;

//! `audit.failed`: the audit found discrepancies; every administrator is told.

use bourse_common::catalog::AuditFailed;
use minijinja::context;

use super::{Draft, Kind, Site, To};

pub const KIND: Kind<AuditFailed> =
    Kind { template: "audit_failed.j2", source: include_str!("../../templates/audit_failed.j2"), compose };

fn compose(event: AuditFailed, site: &Site) -> Draft {
    Draft {
        to: To::Administrators,
        context: context! {
            report_id => event.report_id.to_string(),
            discrepancies => event.discrepancies,
            checks => event.checks,
            site => site.url,
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn names_the_report_and_the_checks_that_failed() {
        let report = Uuid::now_v7();
        let mail = super::super::tests::render(&AuditFailed {
            report_id: report,
            discrepancies: 3,
            checks: vec!["balance_differs_from_entries".into(), "currency_not_conserved".into()],
        });
        assert_eq!(mail.subject, "ALERT: the audit found 3 discrepancies");
        for part in [
            report.to_string().as_str(),
            "balance_differs_from_entries",
            "currency_not_conserved",
            "/api/admin/audit",
        ] {
            assert!(mail.text.contains(part), "{part}: {}", mail.text);
        }
    }
}

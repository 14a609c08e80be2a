-- A deposit is credited once: its entries are found by their reference (deposit:<id>).
CREATE INDEX ledger_entries_reference ON ledger_entries (reference);

DROP INDEX ledger_entries_reference;

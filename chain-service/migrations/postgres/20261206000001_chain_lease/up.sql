-- The lease of chain-service's workers (the deposit watcher and the
-- transaction pipeline): one instance follows the chain and sends at a time.
INSERT INTO relay_lease (name, holder, expires_at) VALUES ('chain', '', 0);

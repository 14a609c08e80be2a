DELETE FROM relay_lease WHERE name = 'chain';

-- Extensions the app's migrations need (var db_extensions), created by the superuser:
-- most extensions (uuid-ossp, pgcrypto, ...) cannot be created by the app's role, and
-- a migration's own `CREATE EXTENSION IF NOT EXISTS` then finds them there. The names
-- arrive as the session setting deployer.extensions (comma-separated).
DO $$
DECLARE
  ext text;
BEGIN
  FOREACH ext IN ARRAY string_to_array(current_setting('deployer.extensions'), ',') LOOP
    ext := btrim(ext);
    CONTINUE WHEN ext = '';
    EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I', ext);
    RAISE NOTICE 'extension % is installed', ext;
  END LOOP;
END $$;

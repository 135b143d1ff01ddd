-- Cloud SQL IAM database users (DB_AUTH=iam, issue 16): each function connects as its own Google
-- service account, a member of Cloud SQL's cloudsqliamserviceaccount role, with no privileges of
-- its own. The migrate job owns the tables (it creates them), so it grants the functions' role
-- what they do with them, now and for every table a later migration creates. Where that role
-- does not exist (a local PostgreSQL, password authentication) there is nothing to grant.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloudsqliamserviceaccount') THEN
    GRANT USAGE ON SCHEMA public TO cloudsqliamserviceaccount;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO cloudsqliamserviceaccount;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO cloudsqliamserviceaccount;
    -- The migrations' own record is the migrate job's alone.
    REVOKE ALL ON tern_migrations FROM cloudsqliamserviceaccount;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public
      GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cloudsqliamserviceaccount;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public
      GRANT USAGE, SELECT ON SEQUENCES TO cloudsqliamserviceaccount;
  END IF;
END
$$;

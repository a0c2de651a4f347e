-- Runs once, when the postgres-data volume is first initialized (docker-entrypoint-initdb.d).
-- Two databases: "deepgrade" (POSTGRES_DB: roster, exchange, job table) and "jupyterhub" (the
-- hub's own state), so that the two schemas never meet.
CREATE DATABASE jupyterhub OWNER deepgrade;

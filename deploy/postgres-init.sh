#!/bin/sh
# Runs once, when the compose PostgreSQL volume is first initialised: the
# runtime role (granted by `vpn-registry migrate`) and the login the
# replicas use, a member of it.
set -eu
psql -v ON_ERROR_STOP=1 -U postgres -d postgres <<SQL
CREATE ROLE vpn_registry_runtime NOLOGIN;
CREATE ROLE vpn_registry_app LOGIN PASSWORD '${VPN_REGISTRY_APP_PASSWORD}' IN ROLE vpn_registry_runtime;
SQL

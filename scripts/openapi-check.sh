#!/usr/bin/env bash
# Checks a live coordinator against its OpenAPI document (docs/openapi.json)
# with schemathesis: no request it generates may make a server error, and
# every response must have a status the document lists for that route, its
# declared content type and a body that fits the declared schema.
#
# It builds nothing: it runs an existing canon binary ($CANON_BIN, default
# target/debug/canon, which `cargo test` leaves) and an existing schemathesis
# ($SCHEMATHESIS, default target/openapi-venv/bin/schemathesis, which
# scripts/test.sh installs from scripts/requirements-openapi.txt). Extra
# arguments go to `schemathesis run` (e.g. --max-examples 500, --seed N).
# Exit status: schemathesis's (non-zero on any finding), or 2 on setup errors.
set -euo pipefail
cd "$(dirname "$0")/.."

canon=${CANON_BIN:-target/debug/canon}
schemathesis=${SCHEMATHESIS:-target/openapi-venv/bin/schemathesis}
for tool in "$canon" "$schemathesis"; do
    if [ ! -x "$tool" ]; then
        echo "openapi-check: $tool is missing (scripts/test.sh builds and installs it)" >&2
        exit 2
    fi
done

tmp=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# One receipt from any node decides a job, so one worker can finish the job
# the check looks at.
token=openapi-check-token
cat > "$tmp/coordinator.toml" <<TOML
listen = "127.0.0.1:0"
replicas = 1
policy = "policy.toml"
heartbeat_secs = 0.2
lease_secs = 1.0
[[tenant]]
name = "openapi"
token = "$token"
TOML
printf 'min_quorum = 1\nunknown_weight = 1.0\n' > "$tmp/policy.toml"
mkfifo "$tmp/out"
"$canon" serve --data "$tmp/data" --config "$tmp/coordinator.toml" > "$tmp/out" 2> "$tmp/coordinator.log" &
server=$!
# The first line names the bound address: "listening on http://127.0.0.1:PORT".
if ! read -r -t 30 line < "$tmp/out" || [[ "$line" != "listening on "* ]]; then
    echo "openapi-check: the coordinator did not start:" >&2
    cat "$tmp/coordinator.log" >&2
    exit 2
fi
url=${line#listening on }
# Keep reading the coordinator's stdout, so it never blocks on the pipe.
cat "$tmp/out" > /dev/null &

# A finished job, so the job routes answer with a real job, its runs, tally
# and receipts, and not only with 404: schemathesis puts its id in every
# `{id}`.
"$canon" worker --coordinator "$url" --key "$tmp/worker.key" --max-runs 1 2> "$tmp/worker.log" &
worker=$!
export CANON_COORDINATOR=$url CANON_TOKEN=$token
if ! job=$("$canon" submit fixtures/jobs/hello.toml 2> "$tmp/submit.log") \
    || ! timeout 60 "$canon" watch "$job" --after 0 --until-done > /dev/null 2>> "$tmp/submit.log" \
    || ! wait "$worker"; then
    echo "openapi-check: could not run a job to check against:" >&2
    cat "$tmp/submit.log" "$tmp/worker.log" >&2
    exit 2
fi
# Its cache (the crashes `st replay` reruns) goes under target/.
cat > "$tmp/schemathesis.toml" <<TOML
[parameters]
"path.id" = "$job"
[cache]
directory = "$PWD/target/schemathesis"
TOML

# GET /v1/events is a server-sent event stream that stays open: it has no
# response to check, so it is left out (tests/pool.rs covers it).
status=0
"$schemathesis" --config-file "$tmp/schemathesis.toml" run docs/openapi.json \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks all --exclude-checks positive_data_acceptance \
    --exclude-path /v1/events \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-30}" \
    --seed "${OPENAPI_SEED:-1}" \
    --generation-database none \
    --request-timeout 10 \
    --workers 1 \
    --no-color \
    "$@" || status=$?
if [ "$status" != 0 ]; then
    echo "openapi-check: schemathesis found the problems above (coordinator log: see below)" >&2
    tail -20 "$tmp/coordinator.log" >&2
fi
exit "$status"

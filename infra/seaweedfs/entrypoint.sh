#!/bin/sh
# Writes SeaweedFS's S3 identity file from the environment (credentials never live in the repository), then starts it.
set -eu
cat > /etc/seaweedfs/s3.json <<JSON
{"identities": [{"name": "trajlab", "credentials": [{"accessKey": "${AWS_ACCESS_KEY_ID}", "secretKey": "${AWS_SECRET_ACCESS_KEY}"}], "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
exec /entrypoint.sh "$@"

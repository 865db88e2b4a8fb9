#!/bin/sh
# docker-compose.minio.yml's one-shot `minio-init`: the registry's bucket and the two users the
# services sign in as (the trainer read-write, inference read-only). Safe to run again: what
# exists is kept, the users' secrets are set to the current values.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$MINIO_BUCKET"
mc admin user add local digitflow-trainer "$MINIO_TRAINER_SECRET"
mc admin user add local digitflow-inference "$MINIO_INFERENCE_SECRET"
attach() {  # $1 policy, $2 user; a policy the user already has is fine
    mc admin policy attach local "$1" --user "$2" 2>/dev/null \
        || mc admin user info local "$2" --json | grep -q "\"$1\""
}
attach readwrite digitflow-trainer
attach readonly digitflow-inference
echo "minio-init: bucket $MINIO_BUCKET, users digitflow-trainer (readwrite), digitflow-inference (readonly)"

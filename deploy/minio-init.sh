#!/bin/sh
# docker-compose.minio.yml's one-shot `minio-init`: the registry's bucket and the two users the
# services sign in as, each with a policy on that bucket alone: digitflow-trainer may do anything
# there (publish, commit state, clean up), digitflow-inference may only list and read (GetObject,
# ListObjectsV2: all a registry reader sends). Safe to run again: what exists is kept, the users'
# secrets and the policies are set to the current values.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$MINIO_BUCKET"

bucket="arn:aws:s3:::$MINIO_BUCKET"
cat >/tmp/trainer.json <<POLICY
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["$bucket", "$bucket/*"]}]}
POLICY
cat >/tmp/inference.json <<POLICY
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["$bucket"]},
  {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["$bucket/*"]}]}
POLICY
mc admin policy create local digitflow-trainer /tmp/trainer.json
mc admin policy create local digitflow-inference /tmp/inference.json

mc admin user add local digitflow-trainer "$MINIO_TRAINER_SECRET"
mc admin user add local digitflow-inference "$MINIO_INFERENCE_SECRET"
attach() {  # $1 user, who gets the policy of the same name; already having it is fine
    mc admin policy attach local "$1" --user "$1" 2>/dev/null \
        || mc admin user info local "$1" --json | grep -Eq "\"policyName\": *\"([^\"]*,)?$1[,\"]"
}
attach digitflow-trainer
attach digitflow-inference
echo "minio-init: bucket $MINIO_BUCKET; users digitflow-trainer (read-write) and" \
     "digitflow-inference (read-only) on it"

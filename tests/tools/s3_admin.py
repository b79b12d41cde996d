#!/usr/bin/env python3
"""Bucket chores for the object-storage tests, done with boto3 (AWS's own SDK), never with
ccmount: make the test user, make buckets, upload a tree the real gocryptfs wrote, download
what ccmount wrote, and edit objects as a hostile host would.

Usage (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY except for `init`):
  s3_admin.py init ENDPOINT                      -> prints {"access_key_id", "secret_access_key"}
  s3_admin.py mb ENDPOINT BUCKET
  s3_admin.py upload ENDPOINT DIR BUCKET PREFIX [--dir-markers]
  s3_admin.py download ENDPOINT BUCKET PREFIX DIR
  s3_admin.py flip ENDPOINT BUCKET KEY OFFSET    (flip one bit of an object in place)
  s3_admin.py put ENDPOINT BUCKET KEY FILE [MODE] (MODE: s3fs x-amz-meta-mode, decimal)
  s3_admin.py rm ENDPOINT BUCKET KEY
  s3_admin.py keys ENDPOINT BUCKET PREFIX        (one key per line)
"""
import json
import os
import sys

import boto3
from botocore.config import Config


def client(endpoint, anonymous=False):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              config=Config(retries={"max_attempts": 5}, s3={"addressing_style": "path"}))
    if anonymous:
        kw.update(aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    return kw


def main(argv):
    cmd, endpoint = argv[1], argv[2]
    if cmd == "init":
        # moto enforces authentication after its first INITIAL_NO_AUTH_ACTION_COUNT
        # requests: these three make the user the tests sign with.
        iam = boto3.client("iam", **client(endpoint, anonymous=True))
        iam.create_user(UserName="ccmount-test")
        key = iam.create_access_key(UserName="ccmount-test")["AccessKey"]
        iam.put_user_policy(UserName="ccmount-test", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        print(json.dumps({"access_key_id": key["AccessKeyId"],
                          "secret_access_key": key["SecretAccessKey"]}))
        return
    s3 = boto3.client("s3", **client(endpoint))
    if cmd == "mb":
        s3.create_bucket(Bucket=argv[3])
    elif cmd == "upload":
        src, bucket, prefix = argv[3], argv[4], argv[5].strip("/")
        n = 0
        for root, _dirs, files in os.walk(src):
            for f in files:
                p = os.path.join(root, f)
                rel = os.path.relpath(p, src)
                key = f"{prefix}/{rel}" if prefix else rel
                if os.path.islink(p):
                    # As s3fs/ossfs store a symlink: the target as content, mode metadata.
                    s3.put_object(Bucket=bucket, Key=key, Body=os.readlink(p).encode(),
                                  Metadata={"mode": str(0o120777)})
                else:
                    s3.upload_file(p, bucket, key)
                n += 1
        if len(argv) > 6 and argv[6] == "--dir-markers":
            # As s3fs/ossfs and the consoles' "create folder" leave them: an empty object
            # "dir/" per directory (the prefix's own included), with mode metadata.
            for root, _dirs, _files in os.walk(src):
                rel = os.path.relpath(root, src)
                key = prefix if rel == "." else (f"{prefix}/{rel}" if prefix else rel)
                if key:
                    s3.put_object(Bucket=bucket, Key=key + "/", Body=b"",
                                  Metadata={"mode": str(0o40755)})
                    n += 1
        print(n)
    elif cmd == "download":
        # A plain parallel download (the benchmark's ceiling): 16 files at once, large
        # ones in parallel ranged GETs (s3transfer), nothing decrypted.
        from concurrent.futures import ThreadPoolExecutor
        from boto3.s3.transfer import TransferConfig
        bucket, prefix, dst = argv[3], argv[4].strip("/"), argv[5]
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else "")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        cfg = TransferConfig(max_concurrency=16, multipart_chunksize=8 << 20)

        def get(key):
            rel = key[len(prefix) + 1:] if prefix else key
            p = os.path.join(dst, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            s3.download_file(bucket, key, p, Config=cfg)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(get, keys))
    elif cmd == "flip":
        bucket, key, off = argv[3], argv[4], int(argv[5])
        body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[off] ^= 1
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    elif cmd == "put":
        bucket, key, f = argv[3], argv[4], argv[5]
        meta = {"mode": argv[6]} if len(argv) > 6 else {}
        with open(f, "rb") as fh:
            s3.put_object(Bucket=bucket, Key=key, Body=fh.read(), Metadata=meta)
    elif cmd == "rm":
        s3.delete_object(Bucket=argv[3], Key=argv[4])
    elif cmd == "keys":
        bucket, prefix = argv[3], argv[4].strip("/")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else "")
        for page in pages:
            for o in page.get("Contents", []):
                print(o["Key"], o["Size"])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)

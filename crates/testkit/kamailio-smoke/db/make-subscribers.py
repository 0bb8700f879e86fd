#!/usr/bin/env python3
"""Regenerate the db_text subscriber tables (MD5 and SHA-256 HA1s)."""
import hashlib
import os

REALM = "smoke.test"
USERS = [("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw"), ("dave", "dave-pw")]
HEADER = "id(int,auto) username(str) domain(str) password(str) ha1(str) ha1b(str)\n"
here = os.path.dirname(os.path.abspath(__file__))
for table, h in (("subscriber", hashlib.md5), ("subscriber_sha256", hashlib.sha256)):
    with open(os.path.join(here, table), "w") as f:
        f.write(HEADER)
        for i, (u, p) in enumerate(USERS, 1):
            ha1 = h(f"{u}:{REALM}:{p}".encode()).hexdigest()
            ha1b = h(f"{u}@{REALM}:{REALM}:{p}".encode()).hexdigest()
            f.write(f"{i}:{u}:{REALM}:{p}:{ha1}:{ha1b}\n")

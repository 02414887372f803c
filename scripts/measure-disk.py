#!/usr/bin/env python3
"""Bytes on disk per task and per serial: the SN stream's store and the generator's sled log.

Runs against a stack from scripts/with-stack.sh (it reads GATEWAY_URL and STACK_DIR):

    BIN_DIR=target/release SERIAL_KEY=0123456789abcdef0123 \
        scripts/with-stack.sh scripts/measure-disk.py [tasks]

Posts `tasks` 1-serial tasks (automatic ranges over 16 models, 16 clients), waits until every one
is finished, then one sequential and one random-order task of 1,000,000 serials, and prints
what each step added to the stream's directory and to the log's directory.
"""
import concurrent.futures
import http.client
import json
import os
import sys
import time
import urllib.parse

URL = urllib.parse.urlsplit(os.environ["GATEWAY_URL"])
STACK = os.environ["STACK_DIR"]


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def sizes():
    return du(os.path.join(STACK, "nats")), du(os.path.join(STACK, "generator"))


def call(conn, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    text = r.read()
    return r.status, (json.loads(text) if text and text[:1] in b"{[" else text)


def connect():
    return http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)


def post_small(n, clients=16):
    def worker(k):
        conn, ids = connect(), []
        for i in range(k, n, clients):
            status, body = call(conn, "POST", "/generate_sn", {"code_model": f"{7000 + i % 16}", "count": 1})
            assert status == 202, (status, body)
            ids.append(body["id"])
        return ids

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return [i for ids in pool.map(worker, range(clients)) for i in ids]


def wait_finished(ids):
    conn = connect()
    for task in ids:
        while True:
            status, body = call(conn, "GET", f"/tasks/{task}?wait=30")
            assert status == 200, (status, body)
            if body["state"] in ("SUCCESS", "FAILURE"):
                assert body["state"] == "SUCCESS", body
                break


def settle():
    # sled writes its pages in the background; let its flush and the stream's land.
    time.sleep(3)
    return sizes()


def report(what, before, after, units, unit):
    stream, log = after[0] - before[0], after[1] - before[1]
    print(f"{what}: stream +{stream / 1e6:.1f} MB ({stream / units:.1f} B/{unit}), "
          f"log +{log / 1e6:.1f} MB ({log / units:.1f} B/{unit})")


def main():
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    conn = connect()
    start = settle()
    wait_finished(post_small(tasks))
    small = settle()
    report(f"{tasks} tasks of 1 serial", start, small, tasks, "task")

    status, body = call(conn, "POST", "/generate_sn", {"code_model": "8000", "count": 1_000_000})
    assert status == 202, body
    wait_finished([body["id"]])
    seq = settle()
    report("1,000,000 sequential serials", small, seq, 1_000_000, "serial")

    status, body = call(conn, "PUT", "/models/8001", {"width": 12, "order": "random"})
    assert status in (200, 201), body
    status, body = call(conn, "POST", "/generate_sn", {"code_model": "8001", "count": 1_000_000})
    assert status == 202, body
    wait_finished([body["id"]])
    rnd = settle()
    report("1,000,000 random-order serials (width 12)", seq, rnd, 1_000_000, "serial")


if __name__ == "__main__":
    main()

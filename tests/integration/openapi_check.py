#!/usr/bin/env python3
"""CTest integration_openapi: the admin API answers what docs/openapi.json says.

Starts keygate-mock and `keygate serve` (with its admin listener) on
ephemeral loopback ports in a temporary directory, calls every route of
the admin API (good requests and refused ones), and validates each JSON
answer against the schema the document gives for that path, method and
status (JSON Schema 2020-12, python3-jsonschema). It also checks that the
document describes every route of the admin listener's route table
(src/admin/admin.c) and nothing else, and that every documented
operation was called. The dashboard's page and files (DASHBOARD_ROUTES)
are no API: they are left out of the document, and checked here to be
in the route table and to answer without a credential under the
dashboard's Content-Security-Policy.

    openapi_check.py --keygate BIN --mock BIN --source DIR
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import jsonschema

TIMEOUT = 10  # seconds, for every wait and request

# Routes of the route table that serve the dashboard (docs/dashboard.md),
# not the API, with a path each to fetch: not in the OpenAPI document.
DASHBOARD_ROUTES = {("get", "/"): "/", ("get", "/ui/{id}"): "/ui/app.js"}


def fail(msg):
    print(f"openapi_check: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class World:
    """The mock, the daemon, their directory, and the HTTP calls."""

    def __init__(self, keygate, mock):
        self.keygate = keygate
        self.mock = mock
        self.dir = tempfile.mkdtemp(prefix="keygate-openapi.")
        os.chmod(self.dir, 0o700)
        self.procs = []

    def wait_port(self, path, proc, name):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path) as f:
                    return int(f.read().split()[-1])
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        fail(f"{name} did not write {path}")

    def start(self):
        d = self.dir
        mock = subprocess.Popen(
            [self.mock, "--port", "0", "--port-file", f"{d}/mock.port"],
            stdout=subprocess.DEVNULL, stderr=open(f"{d}/mock.err", "w"))
        self.procs.append(mock)
        mock_port = self.wait_port(f"{d}/mock.port", mock, "keygate-mock")
        with open(f"{d}/keygate.ini", "w") as f:
            f.write(f"""[server]
listen = 127.0.0.1:0
threads = 1
[admin]
listen = 127.0.0.1:0
[store]
path = state/keygate.db
[security]
hash_key_file = state/hash.key
[provider mock]
type = openai
base_url = http://127.0.0.1:{mock_port}/v1
[model gpt-4o]
provider = mock
input_price = 2.50
output_price = 10.00
""")
        self.cli("init")
        self.admin = self.cli("--json", "admin-tokens", "create", "--name", "openapi")["token"]
        self.ro = self.cli("--json", "admin-tokens", "create", "--name", "ro", "--read-only")["token"]
        self.client = self.cli("--json", "keys", "create", "--name", "client")
        gw = subprocess.Popen(
            [self.keygate, "-c", f"{d}/keygate.ini", "serve", "--port-file",
             f"{d}/gw.port", "--admin-port-file", f"{d}/admin.port"],
            stdout=subprocess.DEVNULL, stderr=open(f"{d}/keygate.log", "w"))
        self.procs.append(gw)
        self.gw_port = self.wait_port(f"{d}/gw.port", gw, "keygate serve")
        self.admin_port = self.wait_port(f"{d}/admin.port", gw, "keygate serve")

    def cli(self, *args):
        r = subprocess.run([self.keygate, "-c", f"{self.dir}/keygate.ini", *args],
                           capture_output=True, text=True, timeout=TIMEOUT)
        if r.returncode != 0:
            fail(f"keygate {' '.join(args)}: {r.stderr}")
        return json.loads(r.stdout) if "--json" in args else r.stdout

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, method, path, token=None, body=None, port=None):
        url = f"http://127.0.0.1:{port or self.admin_port}{path}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


class Checker:
    """Validates answers against the document and counts what was called."""

    def __init__(self, doc):
        self.doc = doc
        self.called = set()
        self.checked = 0
        self.templates = []
        for template in doc["paths"]:
            rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            self.templates.append((re.compile(rx), template))

    def template_of(self, path):
        path = path.split("?")[0]
        for rx, template in self.templates:
            if rx.match(path):
                return template
        fail(f"{path} is not in the document")

    def check(self, method, path, status, headers, raw, want=None):
        if want is not None and status != want:
            fail(f"{method} {path}: status {status}, want {want}: {raw[:300]!r}")
        template = self.template_of(path)
        op = self.doc["paths"][template].get(method.lower())
        if op is None:
            fail(f"{method} {template} is not in the document")
        responses = op["responses"]
        if str(status) not in responses:
            fail(f"{method} {template}: status {status} is not documented")
        self.called.add((method.lower(), template))
        content = responses[str(status)].get("content")
        if content is None:
            if raw:
                fail(f"{method} {template} {status}: a body where none is documented")
            return None
        ctype = headers.get("Content-Type", "").split(";")[0]
        if ctype not in content:
            fail(f"{method} {template} {status}: Content-Type {ctype} not documented")
        if ctype != "application/json":
            return raw.decode()
        body = json.loads(raw)
        schema = dict(content[ctype]["schema"])
        schema["components"] = self.doc["components"]
        try:
            jsonschema.Draft202012Validator(schema).validate(body)
        except jsonschema.ValidationError as e:
            fail(f"{method} {template} {status}: {e.message} at "
                 f"{list(e.absolute_path)} in {raw[:300]!r}")
        self.checked += 1
        return body


def route_table(source):
    """The routes of src/admin/admin.c as (method, OpenAPI template)."""
    text = open(os.path.join(source, "src/admin/admin.c")).read()
    table = text[text.index("admin_routes[] = {"):]
    table = table[:table.index("};")]
    routes = set()
    for method, pattern in re.findall(r'\{"([A-Z]+)",\s*"(/[^"]*)"', table):
        names = iter(["id", "provider"])
        template = re.sub(r"\{\}", lambda _: "{" + next(names) + "}", pattern)
        routes.add((method.lower(), template))
    if not routes:
        fail("no routes found in src/admin/admin.c")
    return routes


def exercise(w, c):
    """Call every route: the good path and the refusals it documents."""
    A, RO = w.admin, w.ro
    call = w.call

    def ok(method, path, token=A, body=None, want=200):
        s, h, raw = call(method, path, token, body)
        return c.check(method, path, s, h, raw, want)

    ok("GET", "/healthz", None)
    ok("GET", "/readyz", None)
    ok("GET", "/metrics", RO)
    ok("GET", "/metrics", None, want=401)
    ok("GET", "/admin/v1/openapi.json", RO)
    ok("GET", "/admin/v1/config", RO)
    ok("POST", "/admin/v1/session", None, {"token": A}, want=201)
    ok("POST", "/admin/v1/session", None, {"token": "kgadm_nope"}, want=401)
    ok("GET", "/admin/v1/session", RO)
    ok("DELETE", "/admin/v1/session", A, want=204)

    ok("GET", "/admin/v1/workspaces", RO)
    ok("POST", "/admin/v1/workspaces", A, {"name": "schema-ws", "mode": "credits"}, 201)
    ok("POST", "/admin/v1/workspaces", A, {"name": "schema-ws"}, 409)
    ok("POST", "/admin/v1/workspaces", RO, {"name": "ro-ws"}, 403)
    ok("POST", "/admin/v1/workspaces", A, {"name": 5}, 400)
    ok("GET", "/admin/v1/workspaces/schema-ws", RO)
    ok("GET", "/admin/v1/workspaces/nope", RO, want=404)
    ok("PATCH", "/admin/v1/workspaces/schema-ws", A, {"mode": "hybrid"})
    ok("POST", "/admin/v1/workspaces/schema-ws/credits", A, {"amount": "5.00"})
    ok("POST", "/admin/v1/workspaces/schema-ws/credits", A, {"amount": "x"}, 400)
    ok("PUT", "/admin/v1/workspaces/schema-ws/credentials/mock", A,
       {"credential": "sk-schema-0123456789abcdef"})
    ok("GET", "/admin/v1/workspaces/schema-ws/credentials", RO)
    ok("DELETE", "/admin/v1/workspaces/schema-ws/credentials/mock", A, want=204)
    ok("DELETE", "/admin/v1/workspaces/schema-ws/credentials/mock", A, want=404)

    made = ok("POST", "/admin/v1/keys", A,
              {"name": "schema-key", "usageLimit": "10.00", "period": "day",
               "periodLimit": "1.00", "rpm": 60, "metadata": {"a": 1}}, 201)
    kid = made["key"]["id"]
    ok("POST", "/admin/v1/keys", A, {"name": "x", "rpm": "fast"}, 400)
    ok("POST", "/admin/v1/keys", A, {"name": "x", "workspace": "nope"}, 404)
    ok("GET", "/admin/v1/keys?limit=1", RO)
    ok("GET", "/admin/v1/keys?limit=0", RO, want=400)
    ok("GET", f"/admin/v1/keys/{kid}", RO)
    ok("GET", "/admin/v1/keys/AAAAAAAAAAAA", RO, want=404)
    ok("PATCH", f"/admin/v1/keys/{kid}", A, {"rpm": None})
    ok("POST", f"/admin/v1/keys/{kid}/disable", A)
    ok("POST", f"/admin/v1/keys/{kid}/enable", A)
    ok("POST", f"/admin/v1/keys/{kid}/rotate", A, {"grace": "1m"})
    ok("POST", f"/admin/v1/keys/{kid}/revoke", A)
    ok("POST", f"/admin/v1/keys/{kid}/revoke", A, want=409)
    ok("DELETE", f"/admin/v1/keys/{kid}", A, want=204)
    ok("DELETE", f"/admin/v1/keys/{kid}", A, want=404)

    # Usage: a few requests through the gateway first.
    token = w.client["token"]
    for _ in range(3):
        s, _, raw = gateway_post(w, token)
        if s != 200:
            fail(f"the gateway answered {s}: {raw[:200]!r}")
    deadline = time.monotonic() + TIMEOUT
    while len(ok("GET", "/admin/v1/usage/events", RO)["data"]) < 3:
        if time.monotonic() > deadline:
            fail("the three requests' usage rows did not arrive")
        time.sleep(0.1)
    body = ok("GET", "/admin/v1/usage/events?limit=2", RO)
    if body["nextCursor"] is None:
        fail("three requests but no second page of history")
    ok("GET", f"/admin/v1/usage/events?limit=2&cursor={body['nextCursor']}", RO)
    ok("GET", "/admin/v1/usage/events?cursor=nope", RO, want=400)
    ok("GET", "/admin/v1/usage/events?workspace=nope", RO, want=404)
    csv = ok("GET", "/admin/v1/usage/events?format=csv", RO)
    if len(csv.splitlines()) != 4:
        fail(f"the CSV export has {len(csv.splitlines())} lines, want 4")
    ok("GET", "/admin/v1/usage?by=hour&from=3h&group=model", RO)
    ok("GET", "/admin/v1/usage?by=day&format=csv", RO)
    ok("GET", "/admin/v1/usage?by=decade", RO, want=400)
    ok("GET", "/admin/v1/usage?workspace=nope", RO, want=404)
    ok("GET", "/admin/v1/audit?limit=5", RO)
    ok("GET", "/admin/v1/audit?limit=0", RO, want=400)


def gateway_post(w, token):
    """One chat completion through the client listener."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{w.gw_port}/v1/chat/completions",
        data=json.dumps({"model": "gpt-4o",
                         "messages": [{"role": "user", "content": "x"}]}).encode(),
        method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check_dashboard(w):
    """The dashboard's routes answer without a credential, with its CSP."""
    for (method, template), path in DASHBOARD_ROUTES.items():
        status, headers, _ = w.call(method.upper(), path)
        csp = headers.get("Content-Security-Policy", "")
        if status != 200 or "script-src 'self'" not in csp:
            fail(f"dashboard route {template}: {path} answered {status}, CSP {csp!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keygate", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--source", required=True)
    args = ap.parse_args()

    doc = json.load(open(os.path.join(args.source, "docs/openapi.json")))
    jsonschema.Draft202012Validator.check_schema(
        {"$defs": doc["components"]["schemas"]})
    if doc.get("openapi") != "3.1.0":
        fail("the document is not OpenAPI 3.1.0")
    documented = {(m, t) for t, ops in doc["paths"].items()
                  for m in ops if m in ("get", "post", "put", "patch", "delete")}
    routes = route_table(args.source)
    missing_pages = set(DASHBOARD_ROUTES) - routes
    if missing_pages:
        fail(f"dashboard routes not in the route table: {sorted(missing_pages)}")
    routes -= set(DASHBOARD_ROUTES)
    if routes != documented:
        fail(f"routes not documented: {sorted(routes - documented)}; "
             f"documented but not routes: {sorted(documented - routes)}")

    w = World(args.keygate, args.mock)
    try:
        w.start()
        served = w.call("GET", "/admin/v1/openapi.json", w.ro)
        if json.loads(served[2]) != doc:
            fail("the served document differs from docs/openapi.json")
        check_dashboard(w)
        c = Checker(doc)
        exercise(w, c)
        missing = documented - c.called
        if missing:
            fail(f"documented operations never called: {sorted(missing)}")
        print(f"openapi_check: {len(documented)} operations, "
              f"{c.checked} answers valid")
    finally:
        w.stop()


if __name__ == "__main__":
    main()

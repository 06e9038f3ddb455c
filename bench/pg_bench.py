"""PostgreSQL relay benchmark: pgbench direct, through jitgate's broker (recording on), through pgbouncer.

    .venv/bin/python bench/pg_bench.py [--seconds 3] [--rounds 9] [--clients 8] [--scale 10] [--tls off|on|both]
                                       [--bare-relay]

One run: a real control plane (tests/cluster.py) grants `postgres@bench-db`
and issues a token; `jitgate pg-broker` relays and records every statement;
pgbouncer (apt; installed when missing) runs in session mode with the same
client TLS setting. pgbench runs select-only (-S) and the default TPC-B-like
script against each, in rounds that interleave the three so that drift hits all
alike. Prints the three TPS figures per script (means of the rounds) and the
ratio broker/pgbouncer as the median of the rounds' ratios (goals: select-only
>= 0.6, TPC-B-like >= 0.8; a burst of noise on this shared machine moves one
round, not the median) with a bootstrap 90% interval of that median (when the
goal lies inside it, one run cannot tell the two apart: pool the rounds of
several runs), also as the ratio of the means, and broker/direct; then counts
the recorded statements. Each proxy's CPU time per transaction (user + system,
from /proc; the broker with its recording process, shown apart too) is printed
beside the TPS: it is steadier than TPS on a noisy machine and says where the
difference comes from. `--bare-relay` adds a fourth target to the plain
rounds: `bench/bare_relay.py`, a uvloop byte relay that does nothing but relay,
the floor for any relay in Python; its ratio to pgbouncer, measured in the same
rounds, shows how much of the broker's gap is the event loop itself.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DB = "jitgate_bench"
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
GOALS = {"select-only": 0.6, "tpcb-like": 0.8}
STATEMENTS_PER_TX = {"select-only": 1, "tpcb-like": 7}


def sh(cmd: list[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 600) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(cmd[:3])} ...` failed: {out.stderr.strip()[-500:]}")
    return out.stdout + out.stderr


def ensure_pgbouncer() -> str:
    path = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if path is None:
        print("installing pgbouncer (apt-get) ...", flush=True)
        sh(["apt-get", "install", "-y", "pgbouncer"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        path = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return path


def ensure_database(scale: int) -> None:
    env = {**os.environ, "PGPASSWORD": ""}
    base = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    exists = sh(["psql", *base, "-d", "postgres", "-Atc", f"select 1 from pg_database where datname = '{DB}'"], env)
    if exists.strip() != "1":
        sh(["createdb", *base, DB], env)
    have = sh(["psql", *base, "-d", DB, "-Atc",
               "select count(*) from pg_class where relname = 'pgbench_branches'"], env).strip()
    branches = sh(["psql", *base, "-d", DB, "-Atc", "select count(*) from pgbench_branches"], env,
                  check=False).strip() if have == "1" else ""
    if branches != str(scale):
        print(f"pgbench -i -s {scale} ...", flush=True)
        sh(["pgbench", *base, "-i", "-q", "-s", str(scale), DB], env)


def reset_tables() -> None:
    """What pgbench does before a run unless told not to (vacuum the small tables, empty the
    history), and a checkpoint: every run starts from the same state, not from the bloat and
    dirty pages the previous runs left (with -n and no autovacuum, that drift was larger
    than the differences measured)."""
    sh(["psql", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", DB, "-q",
        "-c", "vacuum pgbench_branches", "-c", "vacuum pgbench_tellers", "-c", "truncate pgbench_history",
        "-c", "checkpoint"], {**os.environ, "PGPASSWORD": ""})


def policy(tmp: Path) -> Path:
    import yaml

    doc = {
        "version": 1,
        "settings": {"grace_period": "5m", "pending_timeout": "1h", "default_max_extensions": 2, "duration_step": "1m"},
        "users": {"alice": {"groups": ["sre"]}, "admin": {"groups": ["admins"]}},
        "resources": {"bench-db": {"kind": "postgres", "address": "127.0.0.1:5432", "database": DB,
                                   "labels": {"env": "dev"}, "roles": ["postgres"], "owners": ["group:sre"]}},
        "rules": [{"name": "auto", "when": "true", "approval": "auto", "max_duration": "8h"}],
    }
    path = tmp / "policies.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start_broker(cp: object, tmp: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    data = tmp / "broker"
    cmd = [sys.executable, "-m", "cli.main", "pg-broker", "--listen", "127.0.0.1:0",
           "--identity", str(cp.identity("broker")), "--server", cp.address,  # type: ignore[attr-defined]
           "--data-dir", str(data), "--issue-tls-from", str(cp.data.root),  # type: ignore[attr-defined]
           "--allow-plaintext", "--log-level", "warning"]
    log = open(tmp / "broker.log", "ab")
    # No passphrase in the environment: the control plane's CA and the broker's own keys each
    # use the passphrase file of their data directory, as in `jitgate demo`.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    addr = data / "listen.addr"
    deadline = time.monotonic() + 30
    while not addr.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: broker did not start:\n{(tmp / 'broker.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, int(addr.read_text().strip().rsplit(":", 1)[1]), data


def start_bare_relay(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "bare_relay.py"), PG["host"], PG["port"]],
                            stdout=subprocess.PIPE, stderr=open(tmp / "bare_relay.log", "ab"))
    line = proc.stdout.readline().decode()  # type: ignore[union-attr]
    if not line.startswith("port "):
        raise SystemExit(f"bench: the bare relay did not start:\n{(tmp / 'bare_relay.log').read_text()[-2000:]}")
    return proc, int(line.split()[1])


def pgbouncer_tls(cp: object, tmp: Path) -> Path:
    """pgbouncer's own certificate from the same CA; its key stays plain (pgbouncer cannot take
    a passphrase) in the bench's temporary directory, removed at the end."""
    from controlplane.identity import open_x509_ca

    bundle = open_x509_ca(cp.data).issue_server_certificate(["localhost"], [])  # type: ignore[attr-defined]
    tls = tmp / "tls"
    tls.mkdir(mode=0o755)
    (tls / "cert.pem").write_bytes(bundle.cert_pem)
    (tls / "key.pem").write_bytes(bundle.key_pem)
    os.chmod(tls / "key.pem", 0o644 if os.geteuid() == 0 else 0o600)  # pgbouncer runs as user postgres
    return tls


def start_pgbouncer(exe: str, tmp: Path, tls: Path) -> tuple[subprocess.Popen[bytes], int]:
    from tests.broker.pg.harness import free_port

    port = free_port()
    d = tmp / "pgbouncer"
    d.mkdir(mode=0o755)
    (d / "userlist.txt").write_text('"postgres" ""\n')
    (d / "pgbouncer.ini").write_text(f"""[databases]
{DB} = host=127.0.0.1 port=5432 dbname={DB}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {d}/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = {d}/pgbouncer.log
client_tls_sslmode = allow
client_tls_cert_file = {tls}/cert.pem
client_tls_key_file = {tls}/key.pem
""")
    run_as: list[str] = []
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        for path in (tmp, d, tls):
            os.chmod(path, 0o755)
        shutil.chown(d, "postgres")
    proc = subprocess.Popen([*run_as, exe, str(d / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        probe = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", DB, "-Atc",
                                "select 1"], capture_output=True, text=True, env={**os.environ, "PGSSLMODE": "disable"})
        if probe.stdout.strip() == "1":
            return proc, port
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench: pgbouncer did not start: {probe.stderr.strip()}")
        time.sleep(0.1)


def pgbench(
    script: str, port: int, user: str, password: str, sslmode: str, seconds: int, clients: int
) -> tuple[float, int]:
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": sslmode, "PGGSSENCMODE": "disable"}
    args = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-n", "-c", str(clients),
            "-j", str(min(clients, 2)), "-T", str(seconds)]
    if script == "select-only":
        args.append("-S")
    out = sh([*args, DB], env, timeout=seconds * 4 + 60)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    if not tps or not done:
        raise SystemExit(f"bench: cannot read pgbench output:\n{out[-1500:]}")
    return float(tps.group(1)), int(done.group(1))


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: the broker's recording process, pgbouncer under runuser."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            try:
                pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        i += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (all their threads)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def median_interval(ratios: list[float], level: float = 0.9, resamples: int = 4000) -> tuple[float, float]:
    """A bootstrap confidence interval of the median of `ratios` (rounds resampled with
    replacement; seeded, so one run's figures print the same interval again)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = int(resamples * (1 - level) / 2)
    return medians[tail], medians[-tail - 1]


def count_recorded(data: Path) -> int:
    from recorder import FileRecordingStore

    store = FileRecordingStore(data)
    total = 0
    for info in store.list():
        total += sum(1 for e in store.open(info.ref).events() if getattr(e, "type", "") == "statement")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=3, help="length of one pgbench run")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds per target (TPS is their mean)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--tls", choices=["off", "on", "both"], default="both",
                    help="client-side TLS for the broker and pgbouncer (direct is always plain)")
    ap.add_argument("--bare-relay", action="store_true",
                    help="also run a bare uvloop byte relay in the plain rounds (the floor for a Python relay)")
    args = ap.parse_args()

    from google.protobuf import duration_pb2

    from jitgate.v1 import access_pb2
    from tests.cluster import ControlPlane

    bouncer_exe = ensure_pgbouncer()
    ensure_database(args.scale)
    tmp = Path(tempfile.mkdtemp(prefix="jgt-pgbench-"))
    cp = ControlPlane(tmp / "cp", policies=policy(tmp))
    broker = bouncer = bare = None
    bare_port = 0
    try:
        broker, broker_port, broker_data = start_broker(cp, tmp)
        bouncer, bouncer_port = start_pgbouncer(bouncer_exe, tmp, pgbouncer_tls(cp, tmp))
        if args.bare_relay:
            bare, bare_port = start_bare_relay(tmp)
        alice = cp.client("alice")
        d = duration_pb2.Duration()
        d.FromTimedelta(dt.timedelta(hours=1))
        grant = alice.access.CreateRequest(access_pb2.CreateRequestRequest(
            resource="bench-db", role="postgres", duration=d, reason="benchmark")).request
        token = alice.access.IssueDatabaseToken(access_pb2.IssueDatabaseTokenRequest(grant_id=grant.id))
        modes = {"off": ["disable"], "on": ["require"], "both": ["disable", "require"]}[args.tls]
        print(f"pgbench: {args.clients} clients, {args.rounds} x {args.seconds} s per target, scale {args.scale}; "
              f"broker records every statement; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
              flush=True)
        results: dict[tuple[str, str], dict[str, float]] = {}
        proxies = {"pgbouncer": bouncer.pid, "broker": broker.pid, **({"bare": bare.pid} if bare else {})}
        floors: dict[str, tuple[float, float]] = {}  # script -> (bare relay TPS, bare/pgbouncer median)
        expected = 0
        for sslmode in modes:
            for script in ("select-only", "tpcb-like"):
                # Rounds interleave the targets, in turn forwards and backwards, so that
                # drift on a shared machine hits all alike; broker and pgbouncer always run
                # next to each other, and their ratio is taken per round.
                order = ["direct", "pgbouncer", "broker"]
                if bare is not None and sslmode == "disable":  # the bare relay cannot do TLS
                    order.append("bare")
                runs: dict[str, list[float]] = {target: [] for target in order}
                cpu: dict[str, list[float]] = {target: [0.0, 0.0, 0] for target in proxies}  # s, recording s, tx
                for n in range(args.rounds):
                    for target in (order if n % 2 == 0 else order[::-1]):
                        reset_tables()
                        tree = process_tree(proxies[target]) if target in proxies else []
                        own, children = cpu_seconds(tree[:1]), cpu_seconds(tree[1:])
                        port, user, password, mode = {
                            "direct": (5432, "postgres", "", "disable"),
                            "pgbouncer": (bouncer_port, "postgres", "", sslmode),
                            "bare": (bare_port, "postgres", "", "disable"),
                            "broker": (broker_port, token.user, token.token, sslmode)}[target]
                        tps, done = pgbench(script, port, user, password, mode, args.seconds, args.clients)
                        if target == "broker":
                            expected += done * STATEMENTS_PER_TX[script]
                        if tree:
                            time.sleep(0.2)  # the recording process's last batch of the run
                            children = cpu_seconds(tree[1:]) - children
                            cpu[target][0] += cpu_seconds(tree[:1]) - own + children
                            cpu[target][1] += children
                            cpu[target][2] += done
                        runs[target].append(tps)
                row = {k: sum(v) / len(v) for k, v in runs.items()}
                if "bare" in runs:
                    floor = [b / p for b, p in zip(runs["bare"], runs["pgbouncer"], strict=False)]
                    floors[script] = (row["bare"], statistics.median(floor))
                    print(f"  {'':5} {script:11}  bare uvloop relay {row['bare']:9.0f} TPS; bare/pgbouncer per round: "
                          + " ".join(f"{r:.2f}" for r in floor), flush=True)
                us = {t: (c[0] / c[2] * 1e6, c[1] / c[2] * 1e6) for t, c in cpu.items() if c[2]}
                print(
                    f"  {'':5} {script:11}  CPU per transaction (user + system): "
                    f"pgbouncer {us['pgbouncer'][0]:.0f} us, "
                    f"jitgate broker {us['broker'][0]:.0f} us (its recording process {us['broker'][1]:.0f} us)"
                    + (f", bare uvloop relay {us['bare'][0]:.0f} us" if "bare" in us else ""),
                    flush=True,
                )
                ratios = [b / p for b, p in zip(runs["broker"], runs["pgbouncer"], strict=False)]
                row["ratio"] = statistics.median(ratios)
                row["low"], row["high"] = median_interval(ratios)
                results[(sslmode, script)] = row
                print(f"  {'TLS' if sslmode == 'require' else 'plain':5} {script:11}  direct {row['direct']:9.0f}  "
                      f"pgbouncer {row['pgbouncer']:9.0f}  jitgate broker {row['broker']:9.0f} TPS "
                      f"(mean of {args.rounds} rounds); broker/pgbouncer per round: "
                      + " ".join(f"{r:.2f}" for r in ratios), flush=True)
        print()
        print("| client TLS | script | direct TPS | pgbouncer TPS | broker TPS | broker/pgbouncer, median of rounds "
              "(goal) | its 90% interval | broker/pgbouncer, of means | broker/direct |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (sslmode, script), row in results.items():
            ratio = row["ratio"]
            goal = GOALS[script]
            print(
                f"| {'on' if sslmode == 'require' else 'off'} | {script} "
                f"| {row['direct']:.0f} | {row['pgbouncer']:.0f} "
                f"| {row['broker']:.0f} | {ratio:.3f}x (>= {goal}: {'met' if ratio >= goal else 'NOT met'}) "
                f"| {row['low']:.2f}-{row['high']:.2f}"
                f"{' (the goal is inside: within noise)' if row['low'] < goal <= row['high'] else ''} "
                f"| {row['broker'] / row['pgbouncer']:.2f}x | {row['broker'] / row['direct']:.2f}x |"
            )
        if floors:
            print("\n| script (plain) | bare uvloop relay TPS | bare relay/pgbouncer, median of rounds "
                  "| broker/bare relay, of medians |")
            print("| --- | --- | --- | --- |")
            for script, (tps, ratio) in floors.items():
                print(f"| {script} | {tps:.0f} | {ratio:.3f}x | {results[('disable', script)]['ratio'] / ratio:.2f}x |")
        # Sessions end when pgbench disconnects; wait for the broker to seal their recordings.
        time.sleep(1.5)
        recorded = count_recorded(broker_data)
        print(f"\nrecorded statements: {recorded} (pgbench completed {expected} statements in its transactions; "
              f"the difference is pgbench's own setup queries)")
    finally:
        for proc in (broker, bouncer, bare):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        cp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`confmaster-cli`: the operator's command line for a Tessera cluster (talks to the API)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn

from tessera.cli import ArgumentParser
from tessera.errors import ConfigError
from tessera.partition import PARTITIONS
from tessera.security import add_cluster_secret_argument, cluster_secret_from

DEFAULT = "127.0.0.1:1122"


class CliError(Exception):
    pass


_cluster_secret: str | None = None  # set once by main() from the command line or env


def call(
    address: str,
    method: str,
    path: str,
    body: Any = None,
    follow: int = 3,
    secret: str | None = None,
) -> Any:
    """One API call; follows a follower's pointer to the leader for mutations.

    `secret` (else the one main() read) goes in `Authorization: Bearer`."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    secret = secret if secret is not None else _cluster_secret
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(
        f"http://{address}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"{}")
        except json.JSONDecodeError:
            payload = {}
        if (
            exc.code == 421
            and payload.get("leader")
            and follow > 0
            and payload["leader"] != address
        ):
            return call(payload["leader"], method, path, body, follow - 1, secret)
        raise CliError(payload.get("error") or f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: InvalidURL
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach the confmaster at {address}: {reason}") from None


def parse_ranges(specs: list[str]) -> list[list[int]]:
    """'0-4095:0' items -> [[0, 4095, 0]]."""
    out = []
    for spec in specs:
        rng, sep, pg = spec.partition(":")
        first, dash, last = rng.partition("-")
        try:
            if not sep:
                raise ValueError
            item = [int(first), int(last) if dash else int(first), int(pg)]
        except ValueError:
            raise CliError(
                f"bad --range {spec!r} (expected FIRST-LAST:PG, e.g. 0-4095:1)"
            ) from None
        if not 0 <= item[0] <= item[1] < PARTITIONS or item[2] < 0:
            raise CliError(
                f"bad --range {spec!r}: partitions must be FIRST <= LAST within "
                f"0-{PARTITIONS - 1}, and PG a number >= 0"
            )
        out.append(item)
    return out


def show_status(status: dict[str, Any]) -> str:
    lines = []
    meta = status["cluster"]
    lines.append(
        f"cluster {meta['name']}   map v{status['map']['version']}   "
        f"route v{status['route']['version'] if status['route'] else '-'}   "
        f"leader {status.get('leader') or '?'}"
    )
    lines.append("")
    lines.append(f"{'PG':>4}  {'partitions':<24} {'epoch':>5}  {'master':<22} members")
    ranges: dict[int, list[str]] = {}
    for first, last, pg in status["map"]["ranges"]:
        ranges.setdefault(pg, []).append(f"{first}-{last}")
    for pg in status["pgs"]:
        lines.append(
            f"{pg['id']:>4}  {','.join(ranges.get(pg['id'], ['-'])):<24} {pg['epoch']:>5}  "
            f"{pg['master'] or '-':<22} {', '.join(pg['members']) or '-'}"
        )
    lines.append("")
    lines.append(f"{'pgserver':<22} {'PG':>4} {'role':<7} {'state':<6} {'log LSN':>12}")
    for s in status["pgservers"]:
        lines.append(
            f"{s['id']:<22} {s['pg']:>4} {s['role']:<7} {s['state']:<6} {s['last_lsn']:>12}"
        )
    lines.append("")
    lines.append(f"{'gateway':<22} {'admin':>6} {'state':<6} live")
    live = set(status.get("live_gateways", []))
    for g in status["gateways"]:
        is_live = "yes" if g["id"] in live else "no"
        lines.append(f"{g['id']:<22} {g['admin_port']:>6} {g['state']:<6} {is_live}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="confmaster-cli", description=__doc__)
    parser.add_argument(
        "--confmaster",
        default=os.environ.get("TESSERA_CONFMASTER", DEFAULT),
        help="confmaster API HOST:PORT (default $TESSERA_CONFMASTER or 127.0.0.1:1122)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON reply")
    parser.add_argument("--cluster", default="default")
    add_cluster_secret_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    cluster = sub.add_parser("cluster", help="create or list clusters")
    cluster_sub = cluster.add_subparsers(dest="action", required=True)
    create = cluster_sub.add_parser("create", help="create a cluster, map split evenly")
    create.add_argument("name")
    create.add_argument("--pgs", type=int, default=2)
    create.add_argument("--range", action="append", default=[], help="FIRST-LAST:PG (repeatable)")
    cluster_sub.add_parser("list")

    pg = sub.add_parser("pg", help="add or delete a partition group")
    pg_sub = pg.add_subparsers(dest="action", required=True)
    pg_add = pg_sub.add_parser("add")
    pg_add.add_argument("--id", type=int)
    pg_del = pg_sub.add_parser("del")
    pg_del.add_argument("id", type=int)
    pg_set = pg_sub.add_parser("set", help="change a PG's settings")
    pg_set.add_argument("id", type=int)
    pg_set.add_argument(
        "--min-copies",
        type=int,
        required=True,
        help="copies (master included) a write needs while members are down (default 1)",
    )

    pgs = sub.add_parser("pgs", help="add or delete a pgserver")
    pgs_sub = pgs.add_subparsers(dest="action", required=True)
    pgs_add = pgs_sub.add_parser("add")
    pgs_add.add_argument("--pg", type=int, required=True)
    pgs_add.add_argument("address", help="HOST:PORT")
    pgs_del = pgs_sub.add_parser("del")
    pgs_del.add_argument("address", help="HOST:PORT")

    gw = sub.add_parser("gw", help="add or delete a gateway")
    gw_sub = gw.add_subparsers(dest="action", required=True)
    gw_add = gw_sub.add_parser("add")
    gw_add.add_argument("address", help="HOST:PORT (client port)")
    gw_add.add_argument("--admin-port", type=int)
    gw_del = gw_sub.add_parser("del")
    gw_del.add_argument("address")

    failover = sub.add_parser(
        "failover", help="hand a PG's master role to an in-sync slave (maintenance)"
    )
    failover.add_argument("--pg", type=int, required=True)
    failover.add_argument("--to", help="the slave to promote, HOST:PORT (default: the best)")

    map_ = sub.add_parser("map", help="show the partition map")
    map_sub = map_.add_subparsers(dest="action", required=True)
    map_sub.add_parser("show")

    migrate = sub.add_parser(
        "migrate",
        help="move partition ranges to other PGs online; status, list, cancel",
        description="Start jobs: migrate --range FIRST-LAST:PG [--range ...] [--wait]. "
        "Then: migrate status [JOB] [--watch] [--json], migrate list, "
        "migrate cancel JOB | --all.",
    )
    migrate.add_argument("action", nargs="?", choices=["status", "list", "cancel"])
    migrate.add_argument("job", nargs="?", help="a job id (status, cancel)")
    migrate.add_argument("--cluster", dest="migrate_cluster", help="the cluster (as above)")
    migrate.add_argument(
        "--range", action="append", default=[], help="FIRST-LAST:TARGET_PG (repeatable)"
    )
    migrate.add_argument(
        "--rate-mb-s", type=float, default=0.0, help="throttle of the copy (0: none)"
    )
    migrate.add_argument(
        "--block-budget-ms",
        type=int,
        default=3000,
        help="longest client-visible block of a cutover attempt before it rolls back",
    )
    migrate.add_argument(
        "--wait", action="store_true", help="show progress until the jobs end; exit 1 if any failed"
    )
    migrate.add_argument("--all", action="store_true", help="cancel every running job")
    migrate.add_argument("--watch", action="store_true", help="refresh every second")
    migrate.add_argument("--json", dest="migrate_json", action="store_true")

    status = sub.add_parser("status", help="cluster, PGs, pgservers, gateways")
    status.add_argument("--watch", action="store_true", help="refresh every second")
    return parser


def _split_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise CliError(f"bad address {text!r} (expected HOST:PORT)")
    return host, int(port)


def run(args: argparse.Namespace) -> tuple[Any, str]:
    """Execute one command; returns (JSON reply, human text)."""
    addr = args.confmaster
    try:
        _split_address(addr)  # a typo is named as such, not as "cannot reach"
    except CliError:
        raise CliError(f"bad --confmaster {addr!r} (expected HOST:PORT)") from None
    base = f"/clusters/{args.cluster}"
    if args.command == "cluster":
        if args.action == "list":
            reply = call(addr, "GET", "/clusters")
            return reply, "\n".join(reply["clusters"]) or "(no clusters)"
        body: dict[str, Any] = {"name": args.name, "pgs": args.pgs}
        if args.range:
            body["ranges"] = parse_ranges(args.range)
        reply = call(addr, "POST", "/clusters", body)
        return reply, show_status(reply)
    if args.command == "pg":
        if args.action == "add":
            reply = call(addr, "POST", base + "/pgs", {"id": args.id})
        elif args.action == "set":
            reply = call(addr, "PUT", f"{base}/pgs/{args.id}", {"min_copies": args.min_copies})
        else:
            reply = call(addr, "DELETE", f"{base}/pgs/{args.id}")
        return reply, show_status(reply)
    if args.command == "pgs":
        host, port = _split_address(args.address)
        if args.action == "add":
            reply = call(
                addr, "POST", base + "/pgservers", {"pg": args.pg, "host": host, "port": port}
            )
        else:
            reply = call(addr, "DELETE", f"{base}/pgservers/{host}:{port}")
        return reply, show_status(reply)
    if args.command == "gw":
        host, port = _split_address(args.address)
        if args.action == "add":
            admin = args.admin_port or port + 1
            reply = call(
                addr, "POST", base + "/gateways", {"host": host, "port": port, "admin_port": admin}
            )
        else:
            reply = call(addr, "DELETE", f"{base}/gateways/{host}:{port}")
        return reply, show_status(reply)
    if args.command == "failover":
        body = {"to": args.to} if args.to else {}
        reply = call(addr, "POST", f"{base}/pgs/{args.pg}/failover", body)
        text = (
            f"PG {reply['pg']}: master {reply['old_master']} -> {reply['master']}"
            f" at epoch {reply['epoch']}"
        )
        return reply, text
    if args.command == "migrate":
        return run_migrate(args)
    if args.command == "map":
        reply = call(addr, "GET", base + "/map")
        lines = [f"map version {reply['version']}"]
        lines += [f"  {a:>4}-{b:<4} -> PG {pg}" for a, b, pg in reply["ranges"]]
        return reply, "\n".join(lines)
    reply = call(addr, "GET", base)
    return reply, show_status(reply)


# ---------------------------------------------------------------------- migrate

FINISHED = ("done", "cancelled", "failed")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _fmt_time(ms: int) -> str:
    if not ms:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def _ranges_text(job: dict[str, Any]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in job["ranges"])


def show_job(job: dict[str, Any]) -> str:
    eta = f"{job['eta_s']:.1f} s" if job.get("eta_s") is not None else "-"
    lag = "-" if job["lag_bytes"] >= 1 << 30 else _fmt_bytes(job["lag_bytes"])
    blocks = ", ".join(f"{ms} ms" for ms in job["block_ms"]) or "-"
    return "\n".join(
        [
            f"job {job['id']}  {job['phase']:<10} PG {job['source_pg']} -> PG "
            f"{job['target_pg']}   partitions {_ranges_text(job)}",
            f"  copied     {job['keys_copied']}/{job['keys_total']} keys, "
            f"{_fmt_bytes(job['bytes_copied'])}/{_fmt_bytes(job['bytes_total'])} (estimated)"
            f"   ETA {eta}",
            f"  catch-up   applied LSN {job['applied_lsn']}   lag {lag}, "
            f"{job['lag_records']} records",
            f"  cutover    attempts {job['attempts']}/{job['max_attempts']}   block {blocks}"
            f"   budget {job['block_budget_ms']} ms",
            f"  last error {job['last_error'] or '-'}",
            f"  created {_fmt_time(job['created_ms'])}   updated {_fmt_time(job['updated_ms'])}"
            f"   finished {_fmt_time(job['finished_ms'])}",
        ]
    )


def show_jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "(no migration jobs)"
    lines = [f"{'job':>5}  {'phase':<10} {'from':>4} {'to':>4}  {'keys':>17}  {'block':>8}  ranges"]
    for job in jobs:
        block = f"{job['block_ms'][-1]} ms" if job["block_ms"] else "-"
        keys = f"{job['keys_copied']}/{job['keys_total']}"
        lines.append(
            f"{job['id']:>5}  {job['phase']:<10} {job['source_pg']:>4} {job['target_pg']:>4}  "
            f"{keys:>17}  {block:>8}  {_ranges_text(job)}"
        )
    return "\n".join(lines)


def run_migrate(args: argparse.Namespace) -> tuple[Any, str]:
    addr = args.confmaster
    base = f"/clusters/{args.migrate_cluster or args.cluster}/migrations"
    if args.action is None:
        if not args.range:
            raise CliError("migrate needs --range FIRST-LAST:PG (or status, list, cancel)")
        body = {
            "ranges": parse_ranges(args.range),
            "rate_mb_s": args.rate_mb_s,
            "block_budget_ms": args.block_budget_ms,
        }
        reply = call(addr, "POST", base, body)
        if args.wait:
            failed = wait_for_jobs(addr, base, reply["jobs"])
            if failed:
                raise CliError(f"job(s) {', '.join(failed)} did not finish")
        return reply, "started job(s) " + " ".join(reply["jobs"])
    if args.action == "cancel":
        if args.all:
            jobs = call(addr, "GET", base)["jobs"]
            ids = [job["id"] for job in jobs if job["phase"] not in FINISHED]
        elif args.job:
            ids = [args.job]
        else:
            raise CliError("migrate cancel needs a JOB id or --all")
        replies = [call(addr, "POST", f"{base}/{job_id}/cancel", {}) for job_id in ids]
        text = "\n".join(f"job {r['id']}: cancel requested (phase {r['phase']})" for r in replies)
        return replies, text or "(no running jobs)"
    if args.action == "status" and args.job:
        reply = call(addr, "GET", f"{base}/{args.job}")
        return reply, show_job(reply)
    reply = call(addr, "GET", base)
    if args.action == "list":
        return reply, show_jobs(reply["jobs"])
    running = [job for job in reply["jobs"] if job["phase"] not in FINISHED]
    return reply, "\n\n".join(show_job(job) for job in running) or "(no running jobs)"


def wait_for_jobs(addr: str, base: str, ids: list[str]) -> list[str]:
    """A live progress bar per job until all end; the ids of those that did not finish."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    jobs: dict[str, dict[str, Any]] = {}
    with Progress(*columns, transient=False) as progress:
        tasks = {job_id: progress.add_task(f"job {job_id}", total=1, detail="") for job_id in ids}
        while True:
            for job_id in ids:
                job = jobs[job_id] = call(addr, "GET", f"{base}/{job_id}")
                total = max(job["bytes_total"], 1)
                done = total if job["phase"] not in ("prepare", "copy") else job["bytes_copied"]
                detail = job["phase"]
                if job["block_ms"]:
                    detail += f", block {job['block_ms'][-1]} ms"
                if job["last_error"] and job["phase"] not in ("done",):
                    detail += f" ({job['last_error'][:60]})"
                progress.update(
                    tasks[job_id],
                    total=total,
                    completed=min(done, total),
                    detail=detail,
                    description=f"job {job_id} {_ranges_text(job)} PG {job['source_pg']}->"
                    f"{job['target_pg']}",
                )
            if all(job["phase"] in FINISHED for job in jobs.values()):
                break
            time.sleep(0.1)
    return [job_id for job_id, job in jobs.items() if job["phase"] != "done"]


def main() -> None:
    global _cluster_secret
    args = build_parser().parse_args()
    try:
        _cluster_secret = cluster_secret_from(args)
    except ConfigError as exc:
        _die(str(exc))
    try:
        while True:
            reply, text = run(args)
            if args.json or getattr(args, "migrate_json", False):
                print(json.dumps(reply, indent=1, sort_keys=True))
            else:
                if getattr(args, "watch", False):
                    print("\033[2J\033[H", end="")
                print(text)
            if not getattr(args, "watch", False):
                return
            time.sleep(1)
    except CliError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _die(message: str) -> NoReturn:
    print(f"confmaster-cli: error: {message}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    main()

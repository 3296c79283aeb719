"""The demo: every step is a plain `abgate` (or simulator) command, printed and then run.

Real processes throughout: the simulator (OpenAI-compatible upstream with a fine-tuning
API) and `abgate serve` on free loopback ports, embedded state in one directory. The
commands shown are exactly what a user runs against the real OpenAI API by pointing the
router config's upstream and OPENAI_BASE_URL / OPENAI_API_KEY at it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule

ASSETS = Path(__file__).parent
BASE_MODEL = "gpt-4o-mini-2024-07-18"
ROUTE = "support"


class DemoFailed(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    workdir: Path
    console: Console = field(default_factory=Console)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # one client for the readiness and config polls: `httpx.get` builds a client (and loads the CA
    # bundle into an SSL context) on every call, ~50 ms of CPU each; no keep-alive across restarts
    http: httpx.Client = field(default_factory=lambda: httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)))
    users: int = 300
    requests: int = 1200

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ABGATE_HOME=str(self.state), OPENAI_BASE_URL=f"{self.sim}/v1", OPENAI_API_KEY="sk-demo-simulator")
        env.pop("ABGATE_REDIS_URL", None)
        env.setdefault("COLUMNS", "120")
        return env

    # -- running commands -------------------------------------------------------------

    def show(self, args: list[str]) -> None:
        shown = ["abgate", *args[3:]] if args[:3] == [sys.executable, "-m", "abgate"] else ["python", *args[1:]]
        self.console.print(f"[bold cyan]$[/] {shlex.join(shown)}", highlight=False, soft_wrap=True)

    # Every `abgate` step runs in this process, exactly as `abgate ARGS` would (same argv, same
    # output, same exit code): a fresh `python -m abgate` costs 2-4 s of imports before it does
    # anything, and the demo runs about 30 of them.

    def _in_process(self, args: list[str]) -> int:
        import typer.main

        from abgate.cli.main import app

        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env())
        cwd = os.getcwd()
        os.chdir(self.workdir)
        try:
            typer.main.get_command(app).main(args=args, prog_name="abgate")
            return 0
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(saved)

    def abgate(self, *args: str, ok: tuple[int, ...] = (0,)) -> int:
        cmd = [sys.executable, "-m", "abgate", *args]
        self.show(cmd)
        code = self._in_process(list(args))
        if code not in ok:
            raise DemoFailed(f"`{shlex.join(cmd[2:])}` exited {code} (expected {ok})")
        return code

    def abgate_json(self, *args: str) -> Any:
        import contextlib
        import io

        cmd = [sys.executable, "-m", "abgate", *args, "--json"]
        self.show(cmd)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = self._in_process([*args, "--json"])
        if code != 0:
            raise DemoFailed(f"`{shlex.join(cmd[2:])}` failed ({code}):\n{out.getvalue()}")
        return json.loads(out.getvalue())

    def run(self, cmd: list[str], ok: tuple[int, ...] = (0,)) -> int:
        self.show(cmd)
        code = subprocess.run(cmd, env=self.env(), cwd=self.workdir).returncode
        if code not in ok:
            raise DemoFailed(f"`{shlex.join(cmd[1:])}` exited {code} (expected {ok})")
        return code

    def traffic(self, requests: int, seed: int) -> None:
        self.run([sys.executable, "-m", "simulator.traffic", "--gateway", self.gateway, "--route", ROUTE,
                  "--users", str(self.users), "--requests", str(requests), "--seed", str(seed),
                  "--concurrency", "16", "--stream-share", "0.2"])

    def step(self, n: int, title: str) -> None:
        self.console.print()
        self.console.print(Rule(f"[bold]Step {n}[/] · {title}"))

    # -- processes ------------------------------------------------------------------------

    def start(self, cmd: list[str], name: str, health: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.show(cmd)
        proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoFailed(f"{name} exited early; see {self.workdir / f'{name}.log'}")
            try:
                if self.http.get(health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise DemoFailed(f"{name} did not become ready; see {self.workdir / f'{name}.log'}")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.procs.clear()

    def wait_config(self, version: int) -> None:
        """Hot reload is asynchronous: wait until the gateway serves `version`."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = self.http.get(f"{self.gateway}/admin/config", timeout=5)
            if r.status_code == 200 and r.json().get("version", 0) >= version:
                return
            time.sleep(0.2)
        raise DemoFailed(f"the gateway did not load config version {version} within 10 s")

    def current_version(self) -> int:
        return int(self.abgate_json("config", "show")["version"])

    # -- the loop ---------------------------------------------------------------------------

    def main(self) -> None:
        c = self.console
        data = self.workdir / "data"
        c.print(Panel.fit(
            "abgate demo: route chat traffic, log feedback, build a dataset, fine-tune, evaluate,\n"
            "gate, promote, and watch a worse candidate get rolled back, all against the bundled\n"
            f"simulator. State: {self.state}", title="abgate"))

        self.step(1, "start the simulator (OpenAI-compatible upstream) and the gateway, control only")
        sim_port, gw_port = _free_port(), _free_port()
        self.sim, self.gateway = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
        self.start([sys.executable, "-m", "simulator", "--port", str(sim_port), "--ft-seconds", "2",
                    "--state-dir", str(self.workdir / "simulator")], "simulator", f"{self.sim}/healthz")
        router = self.workdir / "router.yaml"
        router.write_text((ASSETS / "router.yaml").read_text().replace("SIMULATOR_URL", self.sim))
        self.start([sys.executable, "-m", "abgate", "serve", "--config", str(router), "--port", str(gw_port),
                    "--state-dir", str(self.state)], "gateway", f"{self.gateway}/readyz")
        c.print(f"gateway on {self.gateway}/v1 (model: {ROUTE!r}), metrics on {self.gateway}/metrics")

        self.step(2, "simulated users chat through the gateway and give feedback")
        self.traffic(self.requests, seed=1)
        self.abgate("events", "stats")

        self.step(3, "build a curated dataset from the archive, validate it, stats and cost")
        self.abgate("dataset", "build", "--name", "support-v1", "--out", str(data))
        self.abgate("dataset", "validate", str(data / "train.jsonl"), "--model", BASE_MODEL)
        self.abgate("dataset", "stats", str(data / "train.jsonl"), "--model", BASE_MODEL)

        self.step(4, "fine-tune through the (simulated) OpenAI fine-tuning API and register the model")
        candidate = self.finetune(data, "support")
        self.abgate("models", "list")

        self.step(5, "offline evaluation on the held-out set: base vs candidate, offline gate")
        self.offline_eval(data, candidate)

        self.step(6, "add the candidate as an arm, ramp it with guardrails, analyse, gate -> GO, promote")
        self.abgate("models", "add-arm", ROUTE, candidate, "--arm-name", "treatment")
        guard = self.workdir / "guardrails.yaml"
        shutil.copy(ASSETS / "guardrails.yaml", guard)
        self.abgate("rollout", ROUTE, "--arm", "treatment", "--steps", "10,50", "--interval", "0s",
                    "--criteria", str(guard), "--once")
        self.wait_config(self.current_version())
        self.traffic(self.requests // 2, seed=2)
        self.abgate("rollout", ROUTE, "--once")  # guardrails at 10% pass -> 50%
        self.wait_config(self.current_version())
        self.traffic(self.requests * 2, seed=3)
        self.abgate("rollout", ROUTE, "--once")  # guardrails at 50% pass -> rollout complete
        self.abgate("analyze", "support-demo")
        online = self.workdir / "online.yaml"
        shutil.copy(ASSETS / "online.yaml", online)
        self.abgate("gate", "--criteria", str(online), "--apply")  # exits 0 only on GO
        self.abgate("config", "history")
        c.print("Restart-safe deploy: these weights are traffic state owned by the config store. "
                f"Restarting with the same `abgate serve --config {router.name}` (still control only) "
                "changes nothing; an edited file is applied with the weights kept; only promote, "
                "rollback, rollout, gate --apply, `abgate config weights` or a one-off "
                "`serve --reset-traffic` move them.", highlight=False, soft_wrap=True)

        self.step(7, "a deliberately worse candidate: the rollout guardrails roll it back automatically")
        self.new_experiment(candidate)
        worse = self.finetune(data, "worse-candidate")
        self.abgate("models", "add-arm", ROUTE, worse, "--arm-name", "candidate2")
        self.abgate("rollout", ROUTE, "--arm", "candidate2", "--steps", "20,50,100", "--interval", "0s",
                    "--criteria", str(guard), "--once")
        self.wait_config(self.current_version())
        self.traffic(self.requests, seed=4)
        self.abgate("rollout", ROUTE, "--once", ok=(3,))  # exit 3: NO-GO, rolled back
        cfg = self.abgate_json("config", "show")["config"]["routes"][ROUTE]
        weights = {a["name"]: a["weight"] for a in cfg["arms"]}
        if weights.get("candidate2", 0) != 0:
            raise DemoFailed(f"candidate2 still has traffic after the rollback: {weights}")
        c.print(f"weights after the automatic rollback: {weights}")

        self.step(8, "where everything is")
        self.where()

    def finetune(self, data: Path, suffix: str) -> str:
        launched = self.abgate_json("finetune", "launch", str(data / "train.jsonl"), "--model", BASE_MODEL,
                                    "--validation", str(data / "validation.jsonl"), "--suffix", suffix,
                                    "--epochs", "3", "--min-examples", "10")
        job = launched["job_id"]
        self.abgate("finetune", "wait", job, "--poll", "0.3")
        model = self.abgate_json("finetune", "status", job)["job"]["fine_tuned_model"]
        if not model:
            raise DemoFailed(f"job {job} produced no model")
        return str(model)

    def offline_eval(self, data: Path, candidate: str) -> None:
        # The archive's support traffic is templated, so its near-duplicate clusters leave the
        # leak-free held-out split tiny; evaluate on fresh questions with reference answers
        # (the simulator's ground truth), none of which occurred in training.
        held = str(write_heldout(data / "eval.jsonl"))
        base_url = f"{self.sim}/v1"
        scorers = "key_facts,length_ratio,similarity"
        for name, model in (("base", BASE_MODEL), ("candidate", candidate)):
            self.abgate("eval", "run", "--dataset", held, "--model", model, "--base-url", base_url,
                        "--scorers", scorers, "--name", name)
        self.abgate("eval", "compare", "base", "candidate")
        offline = self.workdir / "offline.yaml"
        shutil.copy(ASSETS / "offline.yaml", offline)
        self.abgate("gate", "--criteria", str(offline))

    def new_experiment(self, promoted: str) -> None:
        """After a GO the experiment is over: the winner becomes control of a new experiment
        (experiments are never reused, so assignments and analysis start clean)."""
        cfg = self.abgate_json("config", "show")["config"]
        route = cfg["routes"][ROUTE]
        route["experiment"] = "support-demo-2"
        route["arms"] = [{"name": "control", "model": promoted, "weight": 1.0}]
        route["phase"] = 1
        path = self.workdir / "router-2.yaml"
        import yaml

        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.abgate("config", "set", str(path), "--reason", "ship the fine-tune; start experiment support-demo-2")

    def where(self) -> None:
        s = self.state
        rows = [
            ("event archive (JSONL, DuckDB-readable)", s / "events"),
            ("decision records (JSON + Markdown)", s / "decisions"),
            ("config versions", s / "config"),
            ("training registry (SQLite)", s / "registry.sqlite"),
            ("offline eval runs", s / "evals"),
            ("datasets", self.workdir / "data"),
            ("Grafana dashboards", Path(__file__).resolve().parents[2] / "grafana" / "dashboards"),
        ]
        for what, path in rows:
            self.console.print(f"  {what:42} {path}", highlight=False)
        self.console.print(
            "\nOpen the dashboards with Docker: `docker compose up --build`, then Grafana at "
            "http://localhost:3000 (folder 'abgate': 'A/B experiment' and 'Gateway health'). "
            f"Run any step above yourself with the printed command and ABGATE_HOME={s}.",
            highlight=False, soft_wrap=True)


def write_heldout(path: Path, n: int = 150, seed: int = 7) -> Path:
    """Held-out support questions with reference answers, key facts and categories."""
    import random

    from simulator import prompts

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            p = prompts.support(rng)
            row = {"messages": [*p.messages, {"role": "assistant", "content": p.task.ideal}],
                   "key_facts": list(p.task.facts), "category": p.category}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def run_demo(workdir: Path, users: int = 300, requests: int = 1200) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    demo = Demo(workdir=workdir.resolve(), users=users, requests=requests)
    try:
        demo.main()
    finally:
        demo.stop_all()
